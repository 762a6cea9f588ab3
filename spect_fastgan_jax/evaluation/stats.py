"""The paper's statistics: one-way ANOVA of real vs generated groups, with post-hoc
pairwise P-values (Dunnett against real, Tukey HSD for every pair), from scipy.

The paper ran these in GraphPad Prism; scipy's f_oneway, dunnett and tukey_hsd
compute the same tests.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
from scipy import stats

DUNNETT_SEED = 0


def compare(groups: Mapping[str, np.ndarray], control: str = "real") -> dict:
  """One-way ANOVA over `groups` (name -> [n] values), plus post-hoc tests.

  Args:
    groups: at least two groups of at least two values each; `control` among them.
    control: the group every other one is compared with (Dunnett).

  Returns:
    {"anova_p", "anova_f", "dunnett_p": {name: P vs control},
     "tukey_p": {"a vs b": P}, "mean": {name: mean}, "sd": {name: SD}, "n": {name: n}}.
    With exactly two groups all three P-values are the two-sample t-test's
    (Dunnett's up to its integration error).
    P-values are NaN when a test is undefined (e.g. every value equal).
  """
  names = list(groups)
  if control not in groups:
    raise ValueError(f"control group {control!r} not among {names}")
  values = [np.asarray(groups[n], np.float64) for n in names]
  out = {"n": {n: int(len(v)) for n, v in zip(names, values)},
         "mean": {n: float(np.mean(v)) if len(v) else math.nan for n, v in zip(names, values)},
         "sd": {n: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan for n, v in zip(names, values)},
         "anova_f": math.nan, "anova_p": math.nan, "dunnett_p": {}, "tukey_p": {}}
  if len(values) < 2 or any(len(v) < 2 for v in values):
    return out
  with np.errstate(all="ignore"):
    res = stats.f_oneway(*values)
  out["anova_f"], out["anova_p"] = float(res.statistic), float(res.pvalue)
  if not np.isfinite(out["anova_p"]):
    return out
  others = [i for i, n in enumerate(names) if n != control]
  ci = names.index(control)
  # scipy integrates Dunnett's multivariate t by quasi-Monte Carlo: a fixed seed makes
  # the P-values reproducible (their integration error is about 1e-5 absolute).
  dun = stats.dunnett(*[values[i] for i in others], control=values[ci], rng=DUNNETT_SEED)
  out["dunnett_p"] = {names[i]: float(p) for i, p in zip(others, dun.pvalue)}
  tuk = stats.tukey_hsd(*values)
  for i in range(len(names)):
    for j in range(i + 1, len(names)):
      out["tukey_p"][f"{names[i]} vs {names[j]}"] = float(tuk.pvalue[i, j])
  return out


def stars(p: float) -> str:
  """The paper's marks: * P < 0.05, ** P < 0.01, *** P < 0.001, **** P < 0.0001; 'ns' else."""
  if p is None or not np.isfinite(p):
    return "n/a"
  for cut, mark in ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (0.05, "*")):
    if p < cut:
      return mark
  return "ns"


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
  """Standardised mean difference (mean b - mean a) / pooled SD; NaN if undefined.

  Unlike a P-value it does not shrink as the groups grow, so epochs scored at
  different counts stay comparable."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return math.nan
  pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                     / (len(a) + len(b) - 2))
  return float((b.mean() - a.mean()) / pooled) if pooled > 0 else math.nan
