"""Scores of generated images against real ones: the paper's per-pattern statistics
(MC, SD, LR with ANOVA), and the classifier-based condition accuracy, Frechet and
kernel distances and diversity that go beyond it.

A `Group` is one set of images under comparison (the real slices, or one run's
generated images); every function here takes and returns plain numbers, so
evaluate and select share them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats as sp_stats

from spect_fastgan_jax import conditions
from spect_fastgan_jax.evaluation import classifier, metrics, stats

# Per-image metrics that go into the ANOVA: name -> (function, label in reports).
PER_IMAGE = {"mc": (metrics.mean_counts, "mean counts (MC)"),
             "sd": (metrics.image_sd, "image SD"),
             "lr": (metrics.lr_ratio, "left/right ratio (LR)")}


@dataclasses.dataclass
class Group:
  """images: [N, 64, 64] max-normalised; level, pattern: [N] str; side: [N] str or None
  (generated images have a side label only from a side-conditioned run: the side asked for)."""
  name: str
  images: np.ndarray
  level: np.ndarray
  pattern: np.ndarray
  side: np.ndarray | None = None
  # Generated images that sampling mirrored (sample.symmetric_flip), or None.
  mirrored: np.ndarray | None = None

  def __post_init__(self):
    self.images = metrics.normalise(self.images)
    self.level = np.asarray(self.level).astype(str)
    self.pattern = np.asarray(self.pattern).astype(str)

  def mask(self, pattern: str, level: str | None = None) -> np.ndarray:
    m = self.pattern == pattern
    return m & (self.level == level) if level is not None else m

  def conditions(self) -> list[tuple[str, str]]:
    return [(l, p) for l in conditions.LEVELS for p in conditions.PATTERNS
            if self.mask(p, l).any()]


def _key(pattern: str, level: str | None) -> str:
  return pattern if level is None else f"{level}/{pattern}"


def paper_stats(groups: Sequence[Group]) -> dict:
  """ANOVA and post-hoc tests of MC, image SD and LR, per pattern (levels pooled,
  as the paper's Fig. 5) and per (level, pattern); plus each group's mean pixel-wise SD.

  groups[0] is the control (real). A group without images of a pattern or condition
  drops out of that comparison (e.g. dataset 'B' has no CER slices).

  Returns {"per_pattern": {pattern: {metric: compare()}}, "per_condition": {"BG/normal": ...},
  "pixelwise_sd": {key: {group: mean of its SD map}}}.
  """
  control = groups[0].name
  out = {"per_pattern": {}, "per_condition": {}, "pixelwise_sd": {}}
  keys = [(p, None) for p in conditions.PATTERNS] + [(p, l) for l, p in groups[0].conditions()]
  for pattern, level in keys:
    present = [g for g in groups if g.mask(pattern, level).sum() > 0]
    if not present or present[0].name != control:
      continue
    block = out["per_pattern" if level is None else "per_condition"]
    block[_key(pattern, level)] = {
        m: stats.compare({g.name: fn(g.images[g.mask(pattern, level)]) for g in present}, control)
        for m, (fn, _) in PER_IMAGE.items()}
    out["pixelwise_sd"][_key(pattern, level)] = {
        g.name: metrics.mean_pixelwise_sd(g.images[g.mask(pattern, level)]) for g in present}
  return out


def run_scores(real: Group, real_pred: dict, fake: Group, fake_pred: dict,
               levels: Sequence[str], ms_ssim_pairs: int = 200, real_ms_ssim: dict | None = None) -> dict:
  """Classifier-based and diversity scores of one run's images against the real ones.

  Args:
    real, fake: the groups; real_pred, fake_pred: classifier.Trained.predict() of their images.
    levels: the run's levels (the level must be right only if there are several).
    real_ms_ssim: the real groups' pairwise MS-SSIM per condition, if computed before
      (select scores many epochs against one real set).

  Returns {"accuracy": classifier.score(), "per_condition": {"BG/normal": {frechet, kernel,
  ms_ssim_real, ms_ssim_fake, diversity_ratio, sd_ratio, accuracy}}, "side_balance": {...},
  "side_correctness": side_correctness() where `fake` has sides (a side-conditioned run), else None,
  "summary": {accuracy, frechet_mean, kernel_mean, diversity_ratio, sd_ratio}}.
  """
  acc = classifier.score(fake_pred, fake.level, fake.pattern, None, levels)
  per = {}
  for l, p in fake.conditions():
    rm, fm = real.mask(p, l), fake.mask(p, l)
    if rm.sum() < 2 or fm.sum() < 2:
      continue
    key = _key(p, l)
    ms_real = (real_ms_ssim or {}).get(key)
    if ms_real is None:
      ms_real = metrics.pairwise_ms_ssim(real.images[rm], ms_ssim_pairs)
    per[key] = {
        "n_real": int(rm.sum()), "n_fake": int(fm.sum()),
        "frechet": metrics.frechet_distance(real_pred["features"][rm], fake_pred["features"][fm]),
        "kernel": metrics.kernel_distance(real_pred["features"][rm], fake_pred["features"][fm]),
        **variety(real.images[rm], fake.images[fm], ms_real, ms_ssim_pairs),
        "accuracy": acc["per_condition"].get(key)}
  mean = lambda k: float(np.mean([v[k] for v in per.values()])) if per else math.nan
  return {"accuracy": acc, "per_condition": per,
          "side_balance": side_balance(real, real_pred, fake, fake_pred),
          "side_correctness": side_correctness(fake, fake_pred) if fake.side is not None else None,
          "summary": {"accuracy": acc["overall"], "frechet_mean": mean("frechet"),
                      "kernel_mean": mean("kernel"), "diversity_ratio": mean("diversity_ratio"),
                      "sd_ratio": mean("sd_ratio")}}


def variety(real_images: np.ndarray, fake_images: np.ndarray, ms_real: float,
            ms_ssim_pairs: int) -> dict:
  """How varied one condition's generated images are against its real ones:
  {"ms_ssim_real", "ms_ssim_fake", "diversity_ratio", "sd_ratio"}.

  ms_real: the real images' pairwise MS-SSIM (computed once by the caller).
  """
  ms_fake = metrics.pairwise_ms_ssim(fake_images, ms_ssim_pairs)
  sd_real = metrics.mean_pixelwise_sd(real_images)
  return {"ms_ssim_real": ms_real, "ms_ssim_fake": ms_fake,
          # 1 - MS-SSIM is a dissimilarity: the ratio is the generated set's spread
          # relative to the real one (1 = as diverse, near 0 = collapsed).
          "diversity_ratio": (1 - ms_fake) / max(1 - ms_real, 1e-9),
          "sd_ratio": metrics.mean_pixelwise_sd(fake_images) / max(sd_real, 1e-9)}


def real_ms_ssim(real: Group, ms_ssim_pairs: int) -> dict:
  """Pairwise MS-SSIM of the real images per condition (computed once for select)."""
  return {_key(p, l): metrics.pairwise_ms_ssim(real.images[real.mask(p, l)], ms_ssim_pairs)
          for l, p in real.conditions() if real.mask(p, l).sum() >= 2}


def side_correctness(fake: Group, fake_pred: dict) -> dict | None:
  """How often the classifier's side head reads a generated unilateral defect on the
  side it was asked for (a side-conditioned run): {"n", "share" (all), "left", "right"
  (per side asked), "per_level": {level: share}}; None without unilateral images."""
  m = (fake.pattern == "unilateral") & np.isin(fake.side, classifier.SIDE_CLASSES)
  if not m.any():
    return None
  read = np.asarray(classifier.SIDE_CLASSES)[fake_pred["side"][m].argmax(1)]
  asked, level = np.asarray(fake.side)[m], fake.level[m]
  ok = read == asked
  share = lambda sel: float(ok[sel].mean()) if sel.any() else None  # noqa: E731
  return {"n": int(m.sum()), "share": float(ok.mean()), "left": share(asked == "left"),
          "right": share(asked == "right"),
          "per_level": {l: share(level == l) for l in conditions.LEVELS if (level == l).any()}}


def side_balance(real: Group, real_pred: dict, fake: Group, fake_pred: dict) -> dict:
  """Left/right balance of unilateral defects, per level and pooled.

  The generator is not told a side, so its unilateral images should put the defect
  on the left as often as the real ones do. Two readings: the classifier's side
  head, and LR < 1 (a left defect lowers the left counts), which needs no classifier.
  The binomial P tests the generated left share against the real (label) share.
  Where sampling mirrored unilateral images on a fair coin (augment.flip_unilateral
  with sample.symmetric_flip) the set's balance is the coin's; the generator's own
  left share (by LR < 1, on the images flipped back) is given beside it, with its
  binomial P against the real share by LR.
  """
  out = {}
  for level in [None] + [l for l in conditions.LEVELS if real.mask("unilateral", l).any()]:
    rm, fm = real.mask("unilateral", level), fake.mask("unilateral", level)
    if not rm.any() or not fm.any():
      continue
    real_left = float(np.mean(real.side[rm] == "left")) if real.side is not None else math.nan
    fake_left_clf = fake_pred["side"][fm].argmax(1) == classifier.SIDE_CLASSES.index("left")
    fake_left_lr = metrics.lr_ratio(fake.images[fm]) < 1
    p = (sp_stats.binomtest(int(fake_left_clf.sum()), int(fm.sum()), real_left).pvalue
         if 0 < real_left < 1 else math.nan)
    out["all" if level is None else level] = {
        "n_real": int(rm.sum()), "n_fake": int(fm.sum()), "real_left_share": real_left,
        "real_left_share_by_lr": float(np.mean(metrics.lr_ratio(real.images[rm]) < 1)),
        "fake_left_share_by_classifier": float(fake_left_clf.mean()),
        "fake_left_share_by_lr": float(fake_left_lr.mean()), "binomial_p": float(p)}
    row = out["all" if level is None else level]
    mirrored = fake.mirrored[fm] if fake.mirrored is not None else None
    if mirrored is not None and mirrored.any():
      own = fake.images[fm].copy()
      own[mirrored] = own[mirrored][:, :, ::-1]
      own_left = metrics.lr_ratio(own) < 1
      real_lr = row["real_left_share_by_lr"]
      row.update({"mirrored_share": float(mirrored.mean()),
                  "generator_left_share_by_lr": float(own_left.mean()),
                  "generator_binomial_p_by_lr": float(
                      sp_stats.binomtest(int(own_left.sum()), int(fm.sum()), real_lr).pvalue
                      if 0 < real_lr < 1 else math.nan)})
  return out
