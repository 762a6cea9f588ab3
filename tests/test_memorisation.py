"""The memorisation audit and the near-copy filter, on data with known answers."""

import numpy as np
import pytest
from scipy import ndimage

from spect_fastgan_jax import errors, sample
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.evaluation import memorisation

CONDITIONS = (("BG", "normal"), ("BG", "unilateral"))


def _brain(rng) -> np.ndarray:
  """One subject's three adjacent slices: a disc with smooth random perfusion and
  count noise that dominates the differences between subjects, as in SPECT; every
  subject independent, so any two are as alike as two patients."""
  yy, xx = np.mgrid[:64, :64]
  r = rng.uniform(20, 24)
  disc = (np.hypot(yy - 32 - rng.normal(0, 1), xx - 32) < r).astype(np.float64)
  perfusion = 1 + 0.15 * ndimage.gaussian_filter(rng.normal(0, 1, (64, 64)), 4) / 0.07
  out = []
  for k in range(3):
    smooth = ndimage.gaussian_filter(disc * np.clip(perfusion, 0.1, None) * (0.95 + 0.05 * k), 1.5)
    out.append(np.clip(smooth + rng.normal(0, 0.1, (64, 64)) * np.sqrt(smooth), 0, None))
  return np.stack(out).astype(np.float32)


def _data(n_per_condition: int, seed: int) -> SliceDataset:
  rng = np.random.default_rng(seed)
  slices, lv, pt, sd, sj = [], [], [], [], []
  for level, pattern in CONDITIONS:
    for k in range(n_per_condition):
      three = _brain(rng)
      if pattern == "unilateral":
        three[:, :, :32] *= 0.7
      slices.append(three)
      lv.append(level), pt.append(pattern), sd.append("right" if pattern == "unilateral" else "none")
      sj.append(f"seed{seed}-{pattern}-{k}")
  return SliceDataset(slices=np.stack(slices), level=lv, pattern=pt, side=sd, subject=sj)


def _features(images: np.ndarray) -> np.ndarray:
  """A stand-in for the classifier's features that, like them, ignores small shifts and
  flips: the upper half of the max-normalised slice's intensity distribution."""
  x = images / images.max(axis=(1, 2), keepdims=True)
  return np.quantile(x.reshape(len(x), -1), np.linspace(0.5, 0.99, 32), axis=1).T


def _shifted(image: np.ndarray, rows: int) -> np.ndarray:
  """image moved down by `rows` (up if negative), the rows it leaves empty zero."""
  out = np.roll(image, rows, axis=0)
  if rows > 0:
    out[:rows] = 0
  elif rows < 0:
    out[rows:] = 0
  return out


@pytest.fixture(scope="module")
def reference():
  train = _data(40, seed=1)
  return train, memorisation.new_patient_reference(train, max_shift=2, flip=True, features=_features)


def test_shifted_and_flipped_copies_of_training_slices_are_flagged(reference):
  train, ref = reference
  rng = np.random.default_rng(0)
  copies = train.slices[:, 1].copy()
  for k in range(len(copies)):
    flip = train.pattern[k] == "normal" and rng.random() < 0.5
    copies[k] = _shifted(np.fliplr(copies[k]) if flip else copies[k], int(rng.integers(-2, 3)))
  result = memorisation.audit(ref, copies * 3.0, train.level, train.pattern, _features(copies))
  for key in ("BG/normal", "BG/unilateral"):
    assert result["per_condition"]["pixel"][key]["near_copy_share"] >= 0.95
    assert result["per_condition"]["pixel"][key]["binomial_p"] < 1e-6
  assert result["c_t"]["pixel"] < -5
  assert result["near_copy_share"]["feature"] >= 0.9
  # The figure's rows name the copied subject, and the aligned training slice matches.
  row = result["closest"][0]
  assert row["subject"] == train.subject[row["generated"]] and row["distance"] < 1e-6
  aligned = memorisation.aligned_training_slice(ref, row)
  gen = copies[row["generated"]] / copies[row["generated"]].max()
  assert np.abs(aligned - gen)[3:-3].max() < 1e-5      # equal away from the zero-filled rows


def test_new_patients_are_flagged_at_about_the_reference_rate(reference):
  _, ref = reference
  new = _data(40, seed=2)
  result = memorisation.audit(ref, new.slices[:, 1], new.level, new.pattern, _features(new.slices[:, 1]))
  for space in ("pixel", "feature"):
    assert result["near_copy_share"][space] <= 0.1
    assert abs(result["c_t"][space]) < 3
    for c in result["per_condition"][space].values():
      assert c["new_patients"]["n"] == 40 and c["threshold"] <= c["new_patients"]["median"]


def test_without_the_distance_smoothing_copies_are_flagged_and_new_patients_are_not(reference):
  # How much the smoothing matters on SPECT-like noise: experiments/fidelity/memorisation_smoothing.py.
  train, _ = reference
  raw = memorisation.new_patient_reference(train, max_shift=2, flip=True, smooth_px=0.0)
  copies = memorisation.audit(raw, train.slices[:, 1], train.level, train.pattern)
  assert copies["near_copy_share"]["pixel"] == 1.0 and raw.describe()["smooth_px"] == 0.0
  new = _data(40, seed=4)
  assert memorisation.audit(raw, new.slices[:, 1], new.level, new.pattern)["near_copy_share"]["pixel"] <= 0.1


def test_an_image_unlike_any_patient_is_not_flagged(reference):
  train, ref = reference
  yy, xx = np.mgrid[:64, :64]
  ring = ((np.hypot(yy - 32, xx - 32) > 12) & (np.hypot(yy - 32, xx - 32) < 16)).astype(np.float32)
  near, dist = ref.near_copies(np.stack([ring, ring]), np.array(["BG", "BG"]),
                               np.array(["normal", "unilateral"]))
  assert not near.any()
  assert dist[0] > 2 * ref.threshold("BG", "normal")


def test_a_condition_without_real_slices_is_never_flagged(reference):
  train, ref = reference
  near, dist = ref.near_copies(train.slices[:2, 1], np.array(["COR", "COR"]), np.array(["normal"] * 2))
  assert not near.any() and np.isinf(dist).all()


def test_a_bad_quantile_is_refused(reference):
  train, _ = reference
  with pytest.raises(ValueError, match="near_copy_quantile"):
    memorisation.new_patient_reference(train, max_shift=0, flip=False, quantile=1.5)
  with pytest.raises(ValueError, match="smooth_px"):
    memorisation.new_patient_reference(train, max_shift=0, flip=False, smooth_px=-1)


def test_draw_without_near_copies_replaces_copies_by_further_indices(reference):
  train, ref = reference
  other = _data(30, seed=3)

  def generate_rows(lv, pt, index):
    # Even indices replay a training slice of the condition; odd ones are new patients.
    out = []
    for l, p, i in zip(lv, pt, index):
      pool = train if i % 2 == 0 else other
      rows = np.flatnonzero((pool.level == l) & (pool.pattern == p))
      out.append(pool.slices[rows[(i // 2) % len(rows)], 1])
    return np.stack(out)

  lv = np.array(["BG"] * 6 + ["BG"] * 4)
  pt = np.array(["normal"] * 6 + ["unilateral"] * 4)
  images, index, dropped = sample.draw_without_near_copies(generate_rows, lv, pt, ref.near_copies,
                                                           max_draws=100)
  assert images.shape == (10, 64, 64)
  assert all(i % 2 == 1 for i in index) and len(set(index.tolist())) == 10
  # 0, 2, 4, 6, 8 go to 10..14, whose even ones go on to 15..17, then 18, then 19.
  assert [d["index"] for d in dropped] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
  np.testing.assert_array_equal(images, generate_rows(lv, pt, index))   # (seed, index) -> the image
  assert not ref.near_copies(images, lv, pt)[0].any()

  with pytest.raises(errors.RunError, match="near-copies"):
    sample.draw_without_near_copies(lambda l, p, i: generate_rows(l, p, 2 * i), lv, pt, ref.near_copies,
                                    max_draws=40)
