"""The fidelity criteria of docs/fidelity.md, read from a --mode=evaluate report.

    python benchmarks/criteria.py runs/dataset_a_cpu/evaluation/epoch_0120_seed0/report.json

Prints, for the report's first run: the diversity ratio and the pixel-wise SD ratio
(generated / real) per (level, pattern), the condition accuracy against 0.95 x the
classifier's held-out real accuracy, the MC and LR ANOVA P per pattern, the side-balance
binomial P, real + synthetic against real alone, and the memorisation audit's C_T and
near-copy shares; each with whether it is met.
"""

import json
import sys


def main():
  if len(sys.argv) != 2:
    sys.exit(__doc__)
  with open(sys.argv[1]) as f:
    r = json.load(f)
  label = r["runs"][0]["label"]
  scores = r["runs_scores"][label]
  div = {k: v["diversity_ratio"] for k, v in scores["per_condition"].items()}
  sd = {k: v[label] / v["real"] for k, v in r["paper"]["pixelwise_sd"].items() if "/" in k and label in v}
  acc, real_acc = scores["accuracy"]["overall"], r["classifier"]["holdout_accuracy"]["overall"]
  pp = r["paper"]["per_pattern"]
  mc = {p: pp[p]["mc"]["anova_p"] for p in pp}
  lr = {p: pp[p]["lr"]["anova_p"] for p in pp}
  side = scores["side_balance"].get("all", {}).get("binomial_p")
  aug = r.get("augmentation", {}).get(label, {})
  rows = [
      ("diversity ratio >= 0.8, every condition", ", ".join(f"{k} {v:.2f}" for k, v in div.items()),
       f"{sum(v >= 0.8 for v in div.values())} of {len(div)}"),
      (f"condition accuracy >= 0.95 x {real_acc:.3f} = {0.95 * real_acc:.3f}", f"{acc:.3f}",
       "yes" if acc >= 0.95 * real_acc else f"no, by {0.95 * real_acc - acc:.3f}"),
      ("pixel-wise SD ratio 0.8-1.2, every condition", ", ".join(f"{k} {v:.2f}" for k, v in sd.items()),
       f"{sum(0.8 <= v <= 1.2 for v in sd.values())} of {len(sd)}"),
      ("MC ANOVA P > 0.05", " / ".join(f"{p} {v:.4f}" for p, v in mc.items()),
       f"{sum(v > 0.05 for v in mc.values())} of {len(mc)}"),
      ("LR ANOVA P > 0.05", " / ".join(f"{p} {v:.4f}" for p, v in lr.items()),
       f"{sum(v > 0.05 for v in lr.values())} of {len(lr)}"),
      ("side balance binomial P > 0.05", "n/a" if side is None else f"{side:.3f}",
       "n/a" if side is None else ("yes" if side > 0.05 else "no")),
  ]
  if aug:
    both, alone = aug["real + synthetic"], aug["real only"]
    seeds = len(both.get("repeats", [both]))
    value = f"{both['overall']:.3f} vs {alone['overall']:.3f}"
    if seeds > 1:
      per = [(b["overall"], a["overall"]) for b, a in zip(both["repeats"], alone["repeats"])]
      value += (f" (mean of {seeds} seeds; SD {both['sd']['overall']:.3f} / {alone['sd']['overall']:.3f}; "
                f"real + synthetic ahead at {sum(b >= a for b, a in per)} of {seeds} seeds)")
    rows.append(("real + synthetic >= real alone", value,
                 "yes" if both["overall"] >= alone["overall"] else f"no, by {alone['overall'] - both['overall']:.3f}"))
  memo = r.get("memorisation", {}).get(label)
  if memo:
    rows.append(("memorisation: C_T (pixel, feature); near-copies",
                 ", ".join(f"{s} {v:.2f}" for s, v in memo["c_t"].items()) + "; "
                 + ", ".join(f"{s} {v:.1%}" for s, v in memo["near_copy_share"].items()), "-"))
  print(f"{label}, epoch {r['runs'][0]['epoch']}")
  if len(r["runs"]) > 1:
    print("note: a side-by-side report; its ANOVA P-values are over real and every run, not this run alone")
  for name, value, met in rows:
    print(f"- {name}: {value} [{met}]")


if __name__ == "__main__":
  main()
