"""Which epoch --mode=select would name if the run had stopped earlier.

  python experiments/time_to_fidelity/shorter.py RUN/evaluation/select_.../select.json [--every=10]

A run's epochs do not depend on its num_epochs (no schedule in the recipe looks at it),
so a run of N epochs is the first N epochs of a longer one. For N = every, 2 x every,
... this applies select's own rule (evaluation/select.py `choose`, with the margins the
select.json records) to the scored epochs up to N, and prints the epoch it names with
its scores. Run --mode=evaluate at the epochs it prints to get their criteria.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from spect_fastgan_jax.evaluation import select  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("select_json")
  p.add_argument("--every", type=int, default=10)
  args = p.parse_args()
  with open(args.select_json) as f:
    record = json.load(f)
  margins = record["evaluate_config"]["select"]
  rows = sorted(record["rows"], key=lambda r: r["epoch"])
  print("| schedule (epochs) | epoch select names | accuracy | Frechet (mean) | diversity ratio | MC min P | LR min P |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for n in sorted({r["epoch"] for r in rows if r["epoch"] % args.every == 0}):
    best, _ = select.choose([r for r in rows if r["epoch"] <= n], float(margins["accuracy_margin"]),
                            float(margins["min_diversity"]))
    r = next(r for r in rows if r["epoch"] == best)
    print(f"| {n} | {best} | {r['accuracy']:.3f} | {r['frechet_mean']:.1f} | {r['diversity_ratio']:.2f} "
          f"| {r['mc_min_p']:.3f} | {r['lr_min_p']:.3f} |")


if __name__ == "__main__":
  main()
