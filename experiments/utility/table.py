"""The utility study's table: the rare condition's recall per arm, and the issue's target.

    python experiments/utility/table.py BG/bilateral \
        k5_s0=runs/utility_BG-bilateral-5_s0/evaluation/epoch_0110_seed0/report.json ...

The first argument is the rare (level/pattern) condition; each further one NAME=REPORT, a
--mode=evaluate report.json of a run with held-out subjects. Prints two markdown tables:

1. per run and arm: the rare condition's recall and the balanced accuracy (means with 95 %
   intervals over the classifier seeds);
2. per run, for each arm with synthetic slices: the paired difference (same classifier
   seed) to the best arm without them on the rare recall and on balanced accuracy, and
   whether the target holds: rare recall up by >= 0.05 with a 95 % interval above 0, and
   balanced accuracy down by no more than 0.01.
"""

import json
import sys

from spect_fastgan_jax.evaluation.utility import _ci   # report.md's "mean (lo to hi)"

TARGET_GAIN, MAX_BALANCED_LOSS = 0.05, 0.01


def target_met(d: dict, rare: str) -> bool:
  """The issue's target for one synthetic arm's paired differences `d`."""
  gain = d["recall"][rare]
  return (gain["mean"] >= TARGET_GAIN and gain["ci"] is not None and gain["ci"][0] > 0
          and d["balanced"]["mean"] >= -MAX_BALANCED_LOSS)


def studies(report: dict, path: str) -> dict:
  u = report.get("utility")
  if not u:
    sys.exit(f"{path}: no 'utility' block (evaluate a run trained with data.holdout_fraction > 0)")
  done = {label: s for label, s in u.items() if "skipped" not in s}
  if not done:
    sys.exit(f"{path}: the utility study was skipped: {next(iter(u.values()))['skipped']}")
  return done


def main():
  if len(sys.argv) < 3 or any("=" not in a for a in sys.argv[2:]):
    sys.exit(__doc__)
  rare, runs = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
  loaded = []
  for name, path in runs:
    with open(path) as f:
      for label, s in studies(json.load(f), path).items():
        conds = next(iter(s["arms"].values()))["recall"]
        if rare not in conds:
          sys.exit(f"{path}: no condition {rare!r}; it has {', '.join(conds)}")
        loaded.append((name if len(runs) == 1 or label == name else f"{name} ({label})", s))
  print(f"| run | arm | {rare} recall | balanced accuracy | overall |")
  print("|---|---|---|---|---|")
  for name, s in loaded:
    for arm, a in s["arms"].items():
      print(f"| {name} | {arm} | {_ci(a['recall'][rare])} | {_ci(a['balanced'])} | {_ci(a['overall'])} |")
  print()
  print(f"| run | arm | against | {rare} recall, paired | balanced, paired | target met |")
  print("|---|---|---|---|---|---|")
  for name, s in loaded:
    for arm, d in s["paired_vs_best_without_gan"].items():
      print(f"| {name} | {arm} | {s['best_without_gan']} | {_ci(d['recall'][rare])} | "
            f"{_ci(d['balanced'])} | {'yes' if target_met(d, rare) else 'no'} |")


if __name__ == "__main__":
  main()
