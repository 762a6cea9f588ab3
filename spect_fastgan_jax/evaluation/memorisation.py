"""Memorisation audit: are generated slices new images, or copies of training patients?

A generator trained on a few hundred patients can replay them, and then a
"synthetic" set leaks patient data. For every generated image we find its nearest
training slice of the same (level, pattern), and compare that distance with what a
new patient shows: the nearest-neighbour distance of each real subject's slice to
the *other* subjects' slices (leave-one-subject-out; the run trained on every
subject, so the other subjects play the training set and the left-out one a patient
never seen).

Two distances, both computed the same way for generated and real queries:

- pixel: RMS difference of the max-normalised slices, each first smoothed with a
  Gaussian of `smooth_px` (default 1 px) so that a difference in count noise does
  not read as closeness (a smooth image is nearer, in RMS, to every noisy slice:
  real slices smoothed by 0.5 px score C_T -6 unsmoothed, -0.8 smoothed;
  experiments/fidelity/memorisation_smoothing.py), minimised over the
  anterior-posterior shifts the run's augmentation applies (augment.max_shift) and,
  for normal and bilateral slices when the run flips them (augment.flip), and for
  unilateral ones too with augment.flip_unilateral, over a left-right flip;
- feature: Euclidean distance between the condition classifier's features.

Training slices are the centre slices and the slices above and below them (G
sees those too, through the Eq. 6 blend). A generated image closer to the training
set than the `quantile` (default 1 %) of the new-patient distances of its condition
is a near-copy; the expected share is `quantile`. Meehan et al.'s data-copying
statistic C_T (AISTATS 2020) tests the whole distribution: per condition the
Mann-Whitney U of generated-to-train against new-patient-to-train distances as a
z-score, averaged with the conditions' shares of the real data; strongly negative
(e.g. < -3) means generated images sit closer to training slices than new patients
do. See docs/memorisation.md for what this can and cannot tell.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage
from scipy import stats as sp_stats

from spect_fastgan_jax import augment as augment_lib
from spect_fastgan_jax import conditions
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.evaluation import metrics
from spect_fastgan_jax.errors import ConfigError

# Slices of a data-set row the generator sees: index into slices[:, k].
_ROW_SLICES = {0: "below", 1: "centre", 2: "above"}


@dataclasses.dataclass(frozen=True)
class TrainingSlices:
  """Every slice a run's generator saw, one condition at a time."""
  images: np.ndarray    # [M, 64, 64] max-normalised
  level: np.ndarray     # [M] str
  pattern: np.ndarray   # [M] str
  subject: np.ndarray   # [M] str
  row: np.ndarray       # [M] int, the data-set row
  which: np.ndarray     # [M] str: centre, below, above

  @staticmethod
  def of(ds: SliceDataset) -> "TrainingSlices":
    k = ds.slices.shape[1]
    take = [s for s in _ROW_SLICES if s < k]
    images = np.concatenate([metrics.normalise(ds.slices[:, s]) for s in take])
    rep = lambda a: np.concatenate([a] * len(take))  # noqa: E731
    return TrainingSlices(images.astype(np.float32), rep(ds.level), rep(ds.pattern), rep(ds.subject),
                          rep(np.arange(len(ds))), np.repeat([_ROW_SLICES[s] for s in take], len(ds)))

  def mask(self, level: str, pattern: str) -> np.ndarray:
    return (self.level == level) & (self.pattern == pattern)


@dataclasses.dataclass(frozen=True)
class Nearest:
  """Each query's nearest training slice: distance, its index in TrainingSlices and,
  for pixel distances, the shift (rows) and flip of the query that matched it."""
  distance: np.ndarray   # [N]
  index: np.ndarray      # [N] int
  shift: np.ndarray      # [N] int
  flipped: np.ndarray    # [N] bool


def for_pixels(images: np.ndarray, smooth_px: float) -> np.ndarray:
  """What the pixel distance compares: images [N, 64, 64] max-normalised, smoothed
  with a Gaussian of sigma `smooth_px` pixels (0: not at all), max-normalised again."""
  x = metrics.normalise(np.asarray(images, np.float32))
  if smooth_px > 0:
    x = metrics.normalise(ndimage.gaussian_filter(x, sigma=(0, smooth_px, smooth_px)))
  return x.astype(np.float32)


def shifts_and_flips(max_shift: int, flip: bool, pattern: str,
                     flip_unilateral: bool = False) -> list[tuple[int, bool]]:
  """The variants of a query the distance is minimised over, for one pattern."""
  flips = (False, True) if flip and pattern in conditions.flip_patterns(flip_unilateral) else (False,)
  return [(t, f) for t in range(-max_shift, max_shift + 1) for f in flips]


def _variant(images: np.ndarray, shift: int, flipped: bool) -> np.ndarray:
  x = images[:, :, ::-1] if flipped else images
  if shift:
    out = np.zeros_like(x)
    if shift > 0:
      out[:, shift:] = x[:, :-shift]
    else:
      out[:, :shift] = x[:, -shift:]
    x = out
  return x


def nearest_pixel(queries: np.ndarray, refs: np.ndarray, variants: Sequence[tuple[int, bool]],
                  exclude: np.ndarray | None = None) -> Nearest:
  """Nearest `refs` [M, 64, 64] for each of `queries` [N, 64, 64] (both max-normalised)
  by RMS pixel difference, minimised over (shift, flip) variants of the query.
  exclude: [N, M] bool, pairs never matched (a subject's own slices); an excluded row
  gets distance inf."""
  n, m = len(queries), len(refs)
  r = refs.reshape(m, -1).astype(np.float32)   # float32: distances of ~0.04 keep 4 digits
  r2 = (r * r).sum(1)
  best = np.full(n, np.inf)
  idx, shift, flipped = np.zeros(n, int), np.zeros(n, int), np.zeros(n, bool)
  if m == 0:
    return Nearest(best, idx, shift, flipped)
  for t, f in variants:
    q = _variant(queries, t, f).reshape(n, -1).astype(np.float32)
    d2 = np.maximum((q * q).sum(1)[:, None] + r2[None, :] - 2.0 * q @ r.T, 0.0) / q.shape[1]
    if exclude is not None:
      d2 = np.where(exclude, np.inf, d2)
    j = d2.argmin(1)
    d = np.sqrt(d2[np.arange(n), j]).astype(np.float64)
    better = d < best
    best = np.where(better, d, best)
    idx, shift, flipped = np.where(better, j, idx), np.where(better, t, shift), np.where(better, f, flipped)
  return Nearest(best, idx, shift, flipped)


def nearest_feature(queries: np.ndarray, refs: np.ndarray, exclude: np.ndarray | None = None) -> Nearest:
  """Nearest `refs` [M, F] for each of `queries` [N, F] by Euclidean distance."""
  n = len(queries)
  if len(refs) == 0:
    return Nearest(np.full(n, np.inf), np.zeros(n, int), np.zeros(n, int), np.zeros(n, bool))
  q, r = queries.astype(np.float64), refs.astype(np.float64)
  d2 = np.maximum((q * q).sum(1)[:, None] + (r * r).sum(1)[None, :] - 2.0 * q @ r.T, 0.0)
  if exclude is not None:
    d2 = np.where(exclude, np.inf, d2)
  j = d2.argmin(1)
  return Nearest(np.sqrt(d2[np.arange(n), j]), j, np.zeros(n, int), np.zeros(n, bool))


def copying_z(generated: np.ndarray, reference: np.ndarray) -> float:
  """Meehan et al.'s Z_U: the Mann-Whitney U of generated-to-train against
  new-patient-to-train distances as a z-score (normal approximation). About 0 when
  generated images are as far from the training slices as new patients; negative
  when closer (copying), positive when farther (under-fitting)."""
  m, n = len(generated), len(reference)
  if m == 0 or n == 0:
    return float("nan")
  u = sp_stats.mannwhitneyu(generated, reference, alternative="two-sided").statistic
  return float((u - m * n / 2.0) / np.sqrt(m * n * (m + n + 1) / 12.0))


def _summary(d: np.ndarray) -> dict:
  d = d[np.isfinite(d)]
  if not len(d):
    return {"n": 0, "median": None, "p1": None, "p5": None}
  return {"n": int(len(d)), "median": float(np.median(d)), "p1": float(np.quantile(d, 0.01)),
          "p5": float(np.quantile(d, 0.05))}


@dataclasses.dataclass(frozen=True)
class NewPatientReference:
  """The training slices of one data set and, per condition, the leave-one-subject-out
  nearest distances of its real centre slices: what a patient never seen shows."""
  train: TrainingSlices
  train_px: np.ndarray   # [M, 64, 64] the training slices as the pixel distance sees them
  smooth_px: float
  max_shift: int
  flip: bool
  quantile: float
  pixel: dict            # (level, pattern) -> [n] distances
  feature: dict          # (level, pattern) -> [n] distances, or empty without features
  train_features: np.ndarray | None
  # Who stands in for new patients: "leave-one-subject-out" or "held-out subjects the run never saw".
  new_patients: str = "leave-one-subject-out"
  flip_unilateral: bool = False   # unilateral queries are flipped too (augment.flip_unilateral)

  def threshold(self, level: str, pattern: str, space: str = "pixel") -> float:
    """Distances below this are near-copies: the `quantile` of the new-patient distances."""
    d = (self.pixel if space == "pixel" else self.feature)[(level, pattern)]
    d = d[np.isfinite(d)]
    return float(np.quantile(d, self.quantile)) if len(d) else float("nan")

  def nearest(self, images: np.ndarray, level: str, pattern: str) -> tuple[Nearest, np.ndarray]:
    """Pixel-nearest training slices of `images` (all of condition (level, pattern));
    returns (Nearest with indices into self.train, the candidates' indices)."""
    cand = np.flatnonzero(self.train.mask(level, pattern))
    got = nearest_pixel(for_pixels(images, self.smooth_px), self.train_px[cand],
                        shifts_and_flips(self.max_shift, self.flip, pattern, self.flip_unilateral))
    return got, cand


  def near_copies(self, images: np.ndarray, level: np.ndarray, pattern: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(near [N] bool, pixel distance [N]) for images [N, 64, 64] of conditions
    (level, pattern) [N]; a condition without real slices has nothing to copy."""
    level, pattern = np.asarray(level).astype(str), np.asarray(pattern).astype(str)
    near, dist = np.zeros(len(images), bool), np.full(len(images), np.inf)
    for l, p in _conditions(level, pattern):
      if (l, p) in self.pixel:
        sel = np.flatnonzero((level == l) & (pattern == p))
        dist[sel] = self.nearest(images[sel], l, p)[0].distance
        near[sel] = dist[sel] < self.threshold(l, p)
    return near, dist

  def describe(self) -> dict:
    """The near-copy rule, for the records of what it dropped."""
    return {"rule": f"RMS pixel distance to the nearest training slice of the same condition "
                    f"(max-normalised, smoothed by a Gaussian of {self.smooth_px:g} px; shifts "
                    f"+/-{self.max_shift} rows"
                    + ((", left-right flip for normal, bilateral and unilateral" if self.flip_unilateral
                        else ", left-right flip for normal and bilateral") if self.flip else "")
                    + f") below the {self.quantile:g} quantile of the same distance for real "
                    + ("subjects against the other subjects (leave-one-subject-out)"
                       if self.new_patients == "leave-one-subject-out" else
                       "subjects the run never trained on (its held-out subjects)"),
            "new_patients": self.new_patients,
            "quantile": self.quantile, "smooth_px": self.smooth_px, "max_shift": self.max_shift,
            "flip": self.flip, "flip_unilateral": self.flip_unilateral,
            "training_slices": int(len(self.train.images)),
            "thresholds": {f"{l}/{p}": self.threshold(l, p) for l, p in self.pixel}}


def new_patient_reference(ds: SliceDataset, *, max_shift: int, flip: bool, quantile: float = 0.01,
                          smooth_px: float = 1.0, flip_unilateral: bool = False,
                          features: Callable[[np.ndarray], np.ndarray] | None = None,
                          new_patients: SliceDataset | None = None,
                          log: Callable[[str], None] = lambda m: None) -> NewPatientReference:
  """Builds the reference of `ds` (the run's training set). `features`, when given,
  maps images [N, 64, 64] to classifier features [N, F]. `new_patients`, when given,
  are subjects the run never trained on (its held-out subjects): their centre slices'
  distances to `ds` are the reference. Without them each real subject of `ds` stands in
  for a new patient against the other subjects (leave-one-subject-out)."""
  if not 0 < quantile < 1:
    raise ConfigError(f"config field evaluate.memorisation.near_copy_quantile must be in (0, 1), got {quantile}")
  if not 0 <= smooth_px <= 8:
    raise ConfigError(f"config field evaluate.memorisation.smooth_px must be in [0, 8], got {smooth_px}")
  train = TrainingSlices.of(ds)
  train_f = features(train.images) if features is not None else None
  train_px = for_pixels(train.images, smooth_px)
  queries = ds if new_patients is None else new_patients
  real_f = features(metrics.normalise(queries.slices[:, 1])) if features is not None else None
  real = for_pixels(queries.slices[:, 1], smooth_px)
  pixel, feature = {}, {}
  for level, pattern in _conditions(queries.level, queries.pattern):
    q = np.flatnonzero((queries.level == level) & (queries.pattern == pattern))
    cand = np.flatnonzero(train.mask(level, pattern))
    # A subject's own slices are never its nearest "other patient" (none are, for held-out subjects).
    own = queries.subject[q][:, None] == train.subject[cand][None, :]
    pixel[(level, pattern)] = nearest_pixel(real[q], train_px[cand],
                                            shifts_and_flips(max_shift, flip, pattern, flip_unilateral),
                                            own).distance
    if features is not None:
      feature[(level, pattern)] = nearest_feature(real_f[q], train_f[cand], own).distance
  how = "leave-one-subject-out" if new_patients is None else "held-out subjects the run never saw"
  log(f"memorisation reference: {len(queries)} real slices against {len(train.images)} training slices "
      f"({how}), shifts +/-{max_shift}, flip {'on' if flip else 'off'}")
  return NewPatientReference(train, train_px, float(smooth_px), int(max_shift), bool(flip), float(quantile),
                             pixel, feature, train_f, how, bool(flip and flip_unilateral))


def reference_settings(augment_config, memorisation_config) -> dict:
  """new_patient_reference's settings for a run: the variants its augmentation
  (`augment_config`) shows G, and the quantile and smoothing of `memorisation_config`
  (evaluate.memorisation)."""
  return {"max_shift": int(augment_config.max_shift), "flip": bool(augment_config.flip),
          "flip_unilateral": augment_lib.flips_unilateral(augment_config),
          "quantile": float(memorisation_config.near_copy_quantile),
          "smooth_px": float(memorisation_config.smooth_px)}


def near_copy_reference(ds: SliceDataset, augment_config, memorisation_config,
                        log: Callable[[str], None] = lambda m: None) -> NewPatientReference:
  """The near-copy filter's reference: the run's training slices `ds` against themselves
  (leave-one-subject-out, pixel distance), with `reference_settings`."""
  return new_patient_reference(ds, **reference_settings(augment_config, memorisation_config), log=log)


def _conditions(level: np.ndarray, pattern: np.ndarray) -> list[tuple[str, str]]:
  return [(l, p) for l in conditions.LEVELS for p in conditions.PATTERNS
          if ((level == l) & (pattern == p)).any()]


def audit(ref: NewPatientReference, images: np.ndarray, level: np.ndarray, pattern: np.ndarray,
          features: np.ndarray | None = None, closest: int = 16) -> dict:
  """The audit of generated `images` [N, 64, 64] with labels `level`, `pattern` [N]
  (and their classifier `features` [N, F] when the reference has features).

  Returns a JSON-ready dict: per condition and distance ("pixel", "feature") the
  generated and new-patient distance summaries (median, 1st and 5th percentile),
  the threshold, the near-copy share and its one-sided binomial P against
  `quantile`, Z_U; C_T per distance; and the `closest` generated images relative to
  their condition's threshold (rows for `closest_figure`).
  """
  level, pattern = np.asarray(level).astype(str), np.asarray(pattern).astype(str)
  spaces = ("pixel", "feature") if features is not None and ref.train_features is not None else ("pixel",)
  per = {s: {} for s in spaces}
  near = {s: np.zeros(len(images), bool) for s in spaces}
  weight, z = {}, {s: {} for s in spaces}
  ranked = []
  for l, p in _conditions(level, pattern):
    sel = np.flatnonzero((level == l) & (pattern == p))
    if (l, p) not in ref.pixel:
      continue     # a condition the real set lacks: nothing to copy
    px, cand = ref.nearest(images[sel], l, p)
    found = {"pixel": px}
    if "feature" in spaces:
      found["feature"] = nearest_feature(features[sel], ref.train_features[cand])
    weight[(l, p)] = len(ref.pixel[(l, p)])
    for s in spaces:
      d, r = found[s].distance, (ref.pixel if s == "pixel" else ref.feature)[(l, p)]
      thr = ref.threshold(l, p, s)
      k = int((d < thr).sum())
      near[s][sel] = d < thr
      z[s][(l, p)] = copying_z(d, r[np.isfinite(r)])
      per[s][f"{l}/{p}"] = {
          "generated": _summary(d), "new_patients": _summary(r), "threshold": thr,
          "near_copies": k, "near_copy_share": k / len(d),
          "binomial_p": float(sp_stats.binomtest(k, len(d), ref.quantile, alternative="greater").pvalue),
          "z_u": z[s][(l, p)]}
    thr = ref.threshold(l, p, "pixel")
    for k, i in enumerate(sel):
      ranked.append({"generated": int(i), "level": l, "pattern": p, "distance": float(px.distance[k]),
                     "threshold": thr, "ratio": float(px.distance[k] / thr) if thr > 0 else float("inf"),
                     "train_index": int(cand[px.index[k]]), "shift": int(px.shift[k]),
                     "flipped": bool(px.flipped[k])})
  total_w = sum(weight.values())
  c_t = {s: float(sum(weight[c] * z[s][c] for c in z[s]) / total_w) if total_w else float("nan")
         for s in spaces}
  ranked.sort(key=lambda r: r["ratio"])
  for r in ranked[:closest]:
    t = r["train_index"]
    r.update(subject=str(ref.train.subject[t]), row=int(ref.train.row[t]), slice=str(ref.train.which[t]))
  n = len(images)
  return {"settings": {"quantile": ref.quantile, "smooth_px": ref.smooth_px, "max_shift": ref.max_shift,
                       "flip": ref.flip, "new_patients": ref.new_patients,
                       "distances": list(spaces), "training_slices": int(len(ref.train.images))},
          "per_condition": per, "c_t": c_t,
          "near_copy_share": {s: float(near[s].mean()) if n else 0.0 for s in spaces},
          "near_copies_both": int((near["pixel"] & near["feature"]).sum()) if "feature" in spaces else None,
          "closest": ranked[:closest]}


def aligned_training_slice(ref: NewPatientReference, row: dict) -> np.ndarray:
  """The training slice of an `audit` "closest" row, moved into the generated image's
  frame (the inverse of the matched shift and flip), for side-by-side display."""
  img = ref.train.images[row["train_index"]][None]
  return _variant(_variant(img, -row["shift"], False), 0, row["flipped"])[0]
