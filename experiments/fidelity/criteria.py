"""The fidelity criteria of docs/fidelity.md, read from a --mode=evaluate report.

    python experiments/fidelity/criteria.py runs/dataset_a_cpu/evaluation/epoch_0120_seed0/report.json

Prints, for the report's first run: the diversity ratio and the pixel-wise SD ratio
(generated / real) per (level, pattern), the condition accuracy against 0.95 x the
classifier's held-out real accuracy, the MC and LR ANOVA P per pattern, the side-balance
binomial P, the memorisation audit's C_T (spect_fastgan_jax/evaluation/criteria.py), real +
synthetic against real alone and the near-copy shares; each with whether it is met.
"""

import json
import sys

import study_common  # noqa: F401  (puts the repository on sys.path)
from spect_fastgan_jax.evaluation import criteria


def main():
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  with open(sys.argv[1]) as f:
    r = json.load(f)
  label = r["runs"][0]["label"]
  print(f"{label}, epoch {r['runs'][0]['epoch']}")
  if len(r["runs"]) > 1:
    print("note: a side-by-side report; its ANOVA P-values are over real and every run, not this run alone")
  for row in criteria.fidelity_criteria(r, label):
    print(f"- {criteria.describe(row)}")
  aug = r.get("augmentation", {}).get(label, {})
  if aug:
    both, alone = aug["real + synthetic"], aug["real only"]
    seeds = len(both.get("repeats", [both]))
    value = f"{both['overall']:.3f} vs {alone['overall']:.3f}"
    if seeds > 1:
      per = [(b["overall"], a["overall"]) for b, a in zip(both["repeats"], alone["repeats"])]
      value += (f" (mean of {seeds} seeds; SD {both['sd']['overall']:.3f} / {alone['sd']['overall']:.3f}; "
                f"real + synthetic ahead at {sum(b >= a for b, a in per)} of {seeds} seeds)")
    verdict = "yes" if both["overall"] >= alone["overall"] else f"no, by {alone['overall'] - both['overall']:.3f}"
    print(f"- real + synthetic >= real alone: {value} [{verdict}]")
  memo = r.get("memorisation", {}).get(label)
  if memo:
    print("- memorisation near-copies: " + ", ".join(f"{s} {v:.1%}" for s, v in memo["near_copy_share"].items()))


if __name__ == "__main__":
  main()
