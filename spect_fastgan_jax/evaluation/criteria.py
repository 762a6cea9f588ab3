"""The fidelity criteria (docs/fidelity.md), judged from an evaluation's result.

One function, `fidelity_criteria`, reads the dict that `report.evaluate` writes as
report.json and says, for one run, whether each criterion holds and by how much:

| name | holds when |
| --- | --- |
| diversity | diversity ratio >= 0.8 in every (level, pattern) condition |
| accuracy | condition accuracy >= 0.95 x the classifier's held-out real accuracy |
| sd | mean pixel-wise SD within 20 % of real in every condition |
| mc, lr | one-way ANOVA P > 0.05 for mean counts / the left-right ratio in every pattern |
| side | binomial P > 0.05 for the share of generated unilateral defects on the left; where sampling mirrored unilateral images on a fair coin (augment.flip_unilateral), for the generator's own share (the images flipped back, by LR < 1) |
| memorisation | the audit's C_T > -2 in pixel and in feature space |
| side_asked | (a side-conditioned run) the share of unilateral defects asked left, and of those asked right, that the classifier reads on the side asked >= its held-out real side accuracy |

In a side-by-side report (several runs) the ANOVA is over real and every run, so MC and
LR are those of the joint test, not of one run alone (the result says so).
"""

from __future__ import annotations

import math

MIN_DIVERSITY = 0.8
ACCURACY_SHARE = 0.95
SD_RANGE = (0.8, 1.2)
MIN_P = 0.05
MIN_C_T = -2.0
NAMES = ("diversity", "accuracy", "sd", "mc", "lr", "side", "memorisation", "side_asked")


def _row(name: str, rule: str, values: dict, ok: dict, unit_fmt: str) -> dict:
  """One criterion: `values` {part: number}, `ok` {part: bool}; met when every part is."""
  missing = [k for k, v in values.items() if v is None or not math.isfinite(v)]
  judged = {k: v for k, v in ok.items() if k not in missing}
  met = None if not judged else all(judged.values())
  failing = [k for k, v in judged.items() if not v]
  summary = (f"{sum(judged.values())} of {len(judged)}" if len(values) > 1 else
             ("yes" if met else "no") if met is not None else "n/a")
  return {"name": name, "rule": rule, "met": met, "values": values, "failing": failing,
          "summary": summary, "format": unit_fmt}


def fidelity_criteria(result: dict, label: str | None = None) -> list[dict]:
  """The criteria of run `label` (default: the report's first run) in `result`.

  Returns:
    one dict per criterion of NAMES that the report can judge, each with `name`,
    `rule` (the threshold in words), `met` (True, False, or None when not measured),
    `values` {condition, pattern or space: number}, `failing` (the parts that miss)
    and `summary` ("7 of 8", "yes", "no").
  """
  label = label or result["runs"][0]["label"]
  scores = result["runs_scores"][label]
  rows = []
  div = {k: v["diversity_ratio"] for k, v in scores["per_condition"].items()}
  rows.append(_row("diversity", f"diversity ratio >= {MIN_DIVERSITY} in every condition", div,
                   {k: v >= MIN_DIVERSITY for k, v in div.items() if v is not None}, "{:.2f}"))
  acc = scores["accuracy"]["overall"]
  target = ACCURACY_SHARE * result["classifier"]["holdout_accuracy"]["overall"]
  rows.append(_row("accuracy", f"condition accuracy >= {ACCURACY_SHARE} x held-out real = {target:.3f}",
                   {"all": acc}, {"all": acc >= target}, "{:.3f}"))
  sd = {k: v[label] / v["real"] for k, v in result["paper"]["pixelwise_sd"].items()
        if "/" in k and label in v and v["real"]}
  rows.append(_row("sd", f"pixel-wise SD ratio in [{SD_RANGE[0]}, {SD_RANGE[1]}] in every condition",
                   sd, {k: SD_RANGE[0] <= v <= SD_RANGE[1] for k, v in sd.items()}, "{:.2f}"))
  per_pattern = result["paper"]["per_pattern"]
  for metric in ("mc", "lr"):
    p = {k: v[metric]["anova_p"] for k, v in per_pattern.items()}
    rows.append(_row(metric, f"{metric.upper()} one-way ANOVA P > {MIN_P} in every pattern", p,
                     {k: v is not None and v > MIN_P for k, v in p.items()}, "{:.3f}"))
  balance = scores["side_balance"].get("all", {})
  side, rule = balance.get("binomial_p"), f"side balance binomial P > {MIN_P}"
  if "generator_binomial_p_by_lr" in balance:
    # A fair coin mirrored the unilateral images: the set's left share is binomial(n, 0.5)
    # whatever G draws, so it tests the coin; the generator's own share is judged.
    side = balance["generator_binomial_p_by_lr"]
    rule = f"side balance of the generator's own unilateral defects (mirrored ones flipped back, by LR) binomial P > {MIN_P}"
  if side is not None:
    rows.append(_row("side", rule, {"all": side}, {"all": side > MIN_P}, "{:.3f}"))
  memo = result.get("memorisation", {}).get(label)
  if memo:
    c_t = dict(memo["c_t"])
    rows.append(_row("memorisation", f"memorisation audit C_T > {MIN_C_T} in both spaces", c_t,
                     {k: v > MIN_C_T for k, v in c_t.items()}, "{:.2f}"))
  asked = scores.get("side_correctness")
  real_side = result["classifier"]["holdout_accuracy"].get("side")
  if asked and real_side is not None:
    # Each side on its own: a generator (or a classifier) that always says left would
    # otherwise pass on the pooled share.
    sides = {s: asked[s] for s in ("left", "right")}
    rows.append(_row("side_asked", f"side read as asked, for each side, >= held-out real side accuracy "
                     f"{real_side:.3f}", sides,
                     {s: v is not None and v >= real_side for s, v in sides.items()}, "{:.3f}"))
  return rows


def describe(row: dict) -> str:
  """One line: the rule, the values, the verdict."""
  fmt = row["format"]
  values = ", ".join(f"{k} {fmt.format(v) if v is not None else 'n/a'}" for k, v in row["values"].items())
  verdict = row["summary"]
  if row["failing"]:
    verdict += "; misses " + ", ".join(row["failing"])
  return f"{row['rule']}: {values} [{verdict}]"
