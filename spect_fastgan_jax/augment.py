"""On-device augmentation of real slices (paper, training process), driven by a PRNG key.

1. Eq. 6 blend: z = w * z1 + (1 - w) * z2, w ~ U(0, 1), z2 the slice directly
   above or below z1 (chosen at random).
2. Anterior-posterior shift by t pixels, t integer in [-max_shift, max_shift],
   zero fill. Rows run anterior -> posterior, so this is a shift along rows.
3. Left-right flip with p = 0.5, only where `flip_ok` (normal and bilateral
   slices by default): flipping a unilateral slice moves its defect to the other side. With
   `flip_unilateral` (not in the paper; needs a condition without a side) unilateral
   slices flip too: the label stays "unilateral", every defect is learnt on both
   sides, and the generator's target has left and right defects equally often
   (`check_side_share` refuses data whose own sides are uneven). "auto"
   (`with_resolved_flip`) flips them where that is allowed and stands down where not.

With `blend_prob` < 1 (not in the paper) only that share of the slices is blended.
A blend averages the count noise of two slices, so a generator trained on blends
only makes slices smoother than any real one, with a mean count ratio MC ~4 %
above the real slices' (docs/fidelity.md). How much depends on the data's noise
(`blend_excess`); config augment.blend_mc_excess derives the share from it
(`blend_share`), so noisy data is blended less and quiet data more.

With `renormalise` (not in the paper) the blended slice is divided by its own
maximum again. A blend of two max-normalised slices peaks below 1 (their hottest
pixels lie in different places), so without it D learns real slices whose peak
is ~0.93 and G copies that: its images then have the real mean counts but a low
peak, i.e. a mean count ratio MC (mean / max) ~8 % above the real slices' in the
paper's test (docs/fidelity.md).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data.stats import mean_counts, normalise
from spect_fastgan_jax.errors import DataError, check_field, is_number, is_whole

Array = jax.Array


def check_config(augment_config) -> None:
  """Raises ConfigError naming the first bad field of `config.augment`."""
  for f in ("blend", "flip", "renormalise"):
    check_field(isinstance(augment_config[f], bool), f"augment.{f}", augment_config[f], "must be True or False")
  v = augment_config.get("flip_unilateral", False)
  check_field(isinstance(v, bool) or v == AUTO, "augment.flip_unilateral", v,
              f"must be True, False or {AUTO!r}")
  check_field(not (v is True and not augment_config.flip), "augment.flip_unilateral", v,
              "needs augment.flip=True (it flips unilateral slices besides the others)")
  for f in ("max_shift", "diff_shift"):
    v = augment_config[f]
    check_field(is_whole(v) and 0 <= v < 32, f"augment.{f}", v, "must be a whole number in 0..31")
  v = augment_config.blend_prob
  check_field(is_number(v) and 0 < v <= 1, "augment.blend_prob", v,
              "must be a number in (0, 1] (augment.blend=False turns blending off)")
  v = augment_config.get("blend_mc_excess", 0.0)
  check_field(is_number(v) and math.isfinite(v) and 0 <= v < 1, "augment.blend_mc_excess", v,
              "must be a number in [0, 1) (0: use augment.blend_prob as given)")
  check_field(not (v > 0 and not augment_config.blend), "augment.blend_mc_excess", v,
              "needs augment.blend=True (it sets the share of slices blended)")
  for f in ("diff_cutout", "diff_intensity"):
    v = augment_config[f]
    check_field(is_number(v) and 0 <= v < 1, f"augment.{f}", v, "must be a number in [0, 1)")


# The blend's weight w ~ U(0, 1) by the midpoint rule: enough for the excess's third
# decimal, and no random draw, so every start of a run derives the same share.
_BLEND_WEIGHTS = (np.arange(8) + 0.5) / 8


def blend_excess(slices: np.ndarray) -> float:
  """How far blending every slice raises what D sees above the real slices: the mean
  count ratio MC (mean of the max-normalised slice) of w x centre + (1 - w) x neighbour,
  averaged over both neighbours and w uniform in (0, 1), over the centre slices' own
  mean MC, minus 1. `slices`: [N, 3, H, W] (below, centre, above), as training reads them.
  The noisier the data, the more a blend smooths its hottest pixel and the larger this is
  (experiments/robust_fidelity/blend_leak.py measures it with random draws)."""
  mc = lambda x: float(np.mean(mean_counts(x)))
  centre = np.asarray(slices[:, 1], np.float32)
  real = mc(centre)
  blended = [mc(w * centre + (1 - w) * np.asarray(slices[:, j], np.float32))
             for w in _BLEND_WEIGHTS.astype(np.float32) for j in (0, 2)]
  return float(np.mean(blended)) / real - 1.0


def blend_share(slices: np.ndarray, mc_excess: float) -> tuple[float, float]:
  """(blend_prob, the data's blend_excess) for config augment.blend_mc_excess: the share
  of slices blended so that the blend raises D's MC by `mc_excess`,
  min(1, mc_excess / blend_excess), rounded to two decimals (at least 0.01)."""
  excess = blend_excess(slices)
  share = 1.0 if excess <= mc_excess else max(0.01, round(mc_excess / excess, 2))
  return share, excess


def with_blend_share(config, slices: np.ndarray, derived: dict | None = None, log=lambda msg: None):
  """(a training config with augment.blend_prob derived from `slices` (`blend_share`),
  `derived` with that field added) where augment.blend_mc_excess > 0; otherwise
  (`config` itself, `derived`)."""
  derived = dict(derived or {})
  target = float(config.augment.get("blend_mc_excess", 0.0))
  if not (config.augment.blend and target > 0):
    return config, derived
  share, excess = blend_share(slices, target)
  log(f"augment.blend_mc_excess {target:g}: blending every slice would raise D's mean count ratio "
      f"{excess:+.1%} on these slices, so a share of {share:.2f} is blended (augment.blend_prob)")
  derived["augment.blend_prob"] = share
  return workdir_lib.with_derived(config, {"augment.blend_prob": share}), derived


def flips_unilateral(augment_config) -> bool:
  """A run's augment.flip_unilateral (with augment.flip); False where its config predates
  the field. ValueError for "auto", which training resolves from the data
  (`with_resolved_flip`); a trained run's config (workdir.require_run_config) holds
  the resolved value."""
  v = augment_config.get("flip_unilateral", False)
  if v == AUTO:
    raise ValueError("augment.flip_unilateral='auto' is resolved from the training data; read "
                     "the run's config with workdir.require_run_config, which holds the value it ran with")
  return bool(augment_config.flip) and bool(v)


# augment.flip_unilateral's value that flips unilateral slices wherever the run and its
# data allow it (`with_resolved_flip`).
AUTO = "auto"


# The left share of the training set's unilateral defects must be even at this binomial
# P (two-sided, against 0.5) for augment.flip_unilateral.
SIDE_SHARE_MIN_P = 0.05


def side_share(side: np.ndarray, pattern: np.ndarray, subject: np.ndarray) -> tuple[str, float | None]:
  """(what it found, binomial P against an even split; None where nothing is known) for
  the sides of the unilateral defects: of the subjects with a unilateral slice and a side
  label ('left'/'right'; others unknown and not counted), one count per subject (its
  slices share the defect)."""
  from scipy import stats as sp_stats
  known = (np.asarray(pattern) == "unilateral") & np.isin(side, ("left", "right"))
  subjects, first = np.unique(np.asarray(subject)[known], return_index=True)
  left = int(np.sum(np.asarray(side)[known][first] == "left"))
  n = len(subjects)
  if n == 0:
    return "no unilateral slice has a side label, so their balance is not checked", None
  p = float(sp_stats.binomtest(left, n, 0.5).pvalue)
  return (f"{left} of the {n} subjects with a unilateral defect of known side have it on the left "
          f"({left / n:.0%}, binomial P {p:.3g} against an even split)"), p


def check_side_share(side: np.ndarray, pattern: np.ndarray, subject: np.ndarray,
                     source: str = "the training subjects") -> str:
  """Raises DataError when the sides of the unilateral defects are uneven (`side_share`
  P < SIDE_SHARE_MIN_P): augment.flip_unilateral=True would train an even split that the
  data does not have. Returns what it found, for the log."""
  found, p = side_share(side, pattern, subject)
  if p is not None and p < SIDE_SHARE_MIN_P:
    raise DataError(f"{source}: {found}, and config augment.flip_unilateral=True would teach the "
                    "generator an even split; set --config.augment.flip_unilateral=False (or "
                    f"{AUTO!r}) for this data")
  return f"augment.flip_unilateral: {found}"


def with_resolved_flip(config, side_conditioned: bool, dataset, log=lambda msg: None):
  """(the config training runs with, {field: value} of what it derived) for the unilateral
  flip. True and False stand as given (True with `check_side_share`, which refuses
  uneven sides, its finding logged); "auto" flips unilateral slices unless augment.flip
  is off, the run is side-conditioned (data.condition_side) or the sides in the
  SliceDataset `dataset` are uneven (`side_share` P < SIDE_SHARE_MIN_P), and then stands
  down instead of refusing, saying why in `log`. The config as given is what config.json
  records and a resume compares; the resolved value goes beside it ("derived"), where
  the run's readers find it."""
  source = "the training subjects (after any data.holdout_fraction)"
  if config.augment.get("flip_unilateral", False) != AUTO:
    if flips_unilateral(config.augment):
      log(check_side_share(dataset.side, dataset.pattern, dataset.subject, source))
    return config, {}
  if not config.augment.flip:
    on, why = False, "off, as augment.flip is off"
  elif side_conditioned:
    on, why = False, ("off, as the run is side-conditioned (data.condition_side=True): a flip "
                      "would move a defect to the side its condition does not ask for")
  else:
    found, p = side_share(dataset.side, dataset.pattern, dataset.subject)
    on = p is None or p >= SIDE_SHARE_MIN_P
    why = (f"on; {found}" if on else f"off, as in {source} {found}: flipping would teach the "
           "generator an even split the data does not have")
  log(f"augment.flip_unilateral auto: {why}")
  derived = {"augment.flip_unilateral": on}
  return workdir_lib.with_derived(config, derived), derived


def shift_rows(images: Array, shifts: Array) -> Array:
  """Shifts each image [B, H, W] by shifts[b] rows (positive: towards posterior), zero fill."""
  h = images.shape[1]
  src = jnp.arange(h)[None, :] - shifts[:, None]                      # [B, H]
  valid = (src >= 0) & (src < h)
  rows = jnp.take_along_axis(images, jnp.clip(src, 0, h - 1)[:, :, None], axis=1)
  return jnp.where(valid[:, :, None], rows, 0.0)


def augment(key: Array, slices: Array, flip_ok: Array, *, blend: bool = True,
            max_shift: int = 2, flip: bool = True, renormalise: bool = False,
            blend_prob: float = 1.0) -> Array:
  """Augments a batch of real slices.

  Args:
    key: PRNG key.
    slices: [B, 3, 64, 64] float32 in [0, 1] (below, centre, above), each max-normalised.
    flip_ok: [B] bool, True where a left-right flip keeps the label (normal, bilateral;
      unilateral too with config augment.flip_unilateral).
    blend_prob: share of the slices that are blended (paper: 1, every slice); the
      others stay the centre slice, with its own count noise.

  Returns:
    [B, 64, 64] float32 in [0, 1].
  """
  b = slices.shape[0]
  k_w, k_side, k_shift, k_flip = jax.random.split(key, 4)
  k_bp = jax.random.fold_in(k_w, 1)   # apart from the paper's four, so blend_prob 1 is unchanged
  image = slices[:, 1]
  if blend:
    w = jax.random.uniform(k_w, (b, 1, 1))
    above = jax.random.bernoulli(k_side, 0.5, (b, 1, 1))
    neighbour = jnp.where(above, slices[:, 2], slices[:, 0])
    blended = w * image + (1.0 - w) * neighbour
    if renormalise:
      blended = normalise(blended)
    if blend_prob < 1.0:
      image = jnp.where(jax.random.bernoulli(k_bp, blend_prob, (b, 1, 1)), blended, image)
    else:
      image = blended
  if max_shift > 0:
    t = jax.random.randint(k_shift, (b,), -max_shift, max_shift + 1)
    image = shift_rows(image, t)
  if flip:
    do_flip = jax.random.bernoulli(k_flip, 0.5, (b,)) & flip_ok
    image = jnp.where(do_flip[:, None, None], image[:, :, ::-1], image)
  return image


def to_model_range(images: Array, peak: float = 1.0) -> Array:
  """[B, 64, 64] in [0, 1] -> [B, 64, 64, 1] in [-1, peak], the networks' input.

  Zero counts map to -1 and a slice's maximum (1) to `peak` (config field
  model.output_peak). The paper's 1.0 puts every real slice's hottest pixel where
  G's tanh saturates, so G can only approach it by compressing its brightest
  pixels together; a peak below 1 leaves it headroom (docs/fidelity.md).
  """
  return (images * (1.0 + peak) - 1.0)[..., None]


def from_model_range(images: Array, peak: float = 1.0) -> Array:
  """G's output [B, 64, 64, 1] in [-1, 1] -> [B, 64, 64] in [0, 1], inverting
  `to_model_range`. With peak 1 (the paper) that is (x + 1) / 2; with a lower peak
  each image is divided by its own maximum, as every real slice is normalised."""
  x = (images[..., 0] + 1.0) / 2.0
  return x if peak == 1.0 else normalise(x)


def diff_augment(key: Array, images: Array, *, max_shift: int = 0, cutout: float = 0.0,
                 intensity: float = 0.0) -> Array:
  """Differentiable augmentation of what D sees, applied alike to real and fake batches.

  Unlike `augment` (real slices only, the paper's), this runs on the generator's
  output too, so D judges both through the same transform and G gets gradients
  through it (DiffAugment, Zhao et al., NeurIPS 2020). It never moves an image
  left/right: that would turn a left-sided defect into a right-sided one.

  Args:
    key: PRNG key.
    images: [B, 64, 64, 1] in [-1, 1] (the networks' range).
    max_shift: anterior-posterior shift in [-max_shift, max_shift] rows, background fill.
    cutout: side of a square erased (set to background) at a random place, as a
      fraction of 64 px; 0 turns it off.
    intensity: contrast factor in 1 +/- intensity around the background level; 0: off.

  Returns:
    [B, 64, 64, 1], a differentiable function of `images`.
  """
  b = images.shape[0]
  k_shift, k_cut, k_int = jax.random.split(key, 3)
  # Background is -1 in the networks' range (0 counts); fills use it.
  x = images[..., 0] + 1.0
  if max_shift > 0:
    x = shift_rows(x, jax.random.randint(k_shift, (b,), -max_shift, max_shift + 1))
  if intensity > 0:
    gain = jax.random.uniform(k_int, (b, 1, 1), minval=1.0 - intensity, maxval=1.0 + intensity)
    x = x * gain
  if cutout > 0:
    side = max(1, int(round(cutout * x.shape[1])))
    k_r, k_c = jax.random.split(k_cut)
    r0 = jax.random.randint(k_r, (b, 1, 1), 0, x.shape[1] - side + 1)
    c0 = jax.random.randint(k_c, (b, 1, 1), 0, x.shape[2] - side + 1)
    rows = jnp.arange(x.shape[1])[None, :, None]
    cols = jnp.arange(x.shape[2])[None, None, :]
    inside = (rows >= r0) & (rows < r0 + side) & (cols >= c0) & (cols < c0 + side)
    x = jnp.where(inside, 0.0, x)
  return (x - 1.0)[..., None]
