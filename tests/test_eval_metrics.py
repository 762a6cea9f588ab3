"""Evaluation metrics on constructed images with known answers."""

import numpy as np
import pytest

from spect_fastgan_jax.evaluation import metrics


def _halves(right_value, left_value):
  """A 64x64 image: columns 0-31 (patient's right) and 32-63 (patient's left)."""
  img = np.empty((64, 64), np.float32)
  img[:, :32], img[:, 32:] = right_value, left_value
  return img


def test_lr_is_patient_left_over_patient_right_counts():
  img = _halves(right_value=2.0, left_value=3.0)
  np.testing.assert_allclose(metrics.lr_ratio(img[None]), [1.5], rtol=1e-6)


def test_left_sided_defect_gives_lr_below_one():
  img = np.full((64, 64), 10.0, np.float32)
  img[20:40, 40:56] = 4.0  # a cold region in the patient's left hemisphere
  assert metrics.lr_ratio(img[None])[0] < 1


def test_lr_does_not_depend_on_scale():
  img = _halves(1.0, 3.0)
  np.testing.assert_allclose(metrics.lr_ratio(np.stack([img, 7 * img])), [3.0, 3.0], rtol=1e-6)


def test_mc_of_constant_image_is_one_whatever_its_counts():
  imgs = np.stack([np.full((64, 64), c, np.float32) for c in (0.3, 5.0, 1200.0)])
  np.testing.assert_allclose(metrics.mean_counts(imgs), [1.0, 1.0, 1.0], rtol=1e-6)


def test_mc_of_half_bright_image_is_three_quarters():
  np.testing.assert_allclose(metrics.mean_counts(_halves(50.0, 100.0)[None]), [0.75], rtol=1e-6)


def test_image_sd_of_two_level_image():
  # Half the pixels at 1, half at 0.5 (after scaling to the maximum): SD = 0.25.
  np.testing.assert_allclose(metrics.image_sd(_halves(4.0, 8.0)[None]), [0.25], rtol=1e-5)
  assert metrics.image_sd(np.ones((1, 64, 64)))[0] == 0


def test_sd_map_is_zero_for_identical_images_and_known_for_two():
  a = _halves(1.0, 0.5)
  assert np.all(metrics.sd_map(np.stack([a, a, a])) == 0)
  b = _halves(1.0, 1.0)
  sd = metrics.sd_map(np.stack([a, b]))
  np.testing.assert_allclose(sd[:, 32:], 0.5 / np.sqrt(2), rtol=1e-5)  # |0.5 - 1| / sqrt(2), ddof=1
  np.testing.assert_allclose(sd[:, :32], 0.0, atol=1e-7)
  assert metrics.mean_pixelwise_sd(np.stack([a, b])) == pytest.approx(0.25 / np.sqrt(2), rel=1e-5)


def test_mean_map_of_max_normalised_images():
  np.testing.assert_allclose(metrics.mean_map(np.stack([_halves(1, 2), _halves(5, 5)])),
                             np.where(np.arange(64) < 32, 0.75, 1.0)[None].repeat(64, 0), rtol=1e-6)


def test_ms_ssim_is_one_for_identical_and_lower_with_noise():
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[:64, :64]
  img = np.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / 300.0).astype(np.float32)
  noisy = img + rng.normal(0, 0.1, img.shape).astype(np.float32)
  noisier = img + rng.normal(0, 0.3, img.shape).astype(np.float32)
  s = metrics.ms_ssim(np.stack([img, img, img]), np.stack([img, noisy, noisier]))
  assert s[0] == pytest.approx(1.0, abs=1e-5)
  assert 1 > s[1] > s[2] > 0


def test_pairwise_ms_ssim_of_a_collapsed_group_is_one():
  img = np.random.default_rng(1).uniform(0.2, 1, (64, 64)).astype(np.float32)
  assert metrics.pairwise_ms_ssim(np.stack([img] * 5)) == pytest.approx(1.0, abs=1e-5)
  varied = np.random.default_rng(2).uniform(0, 1, (6, 64, 64)).astype(np.float32)
  assert metrics.pairwise_ms_ssim(varied) < 0.5


def test_frechet_distance_of_a_shift_is_its_squared_length():
  x = np.random.default_rng(0).normal(size=(500, 4))
  assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
  shift = np.array([3.0, 0.0, -4.0, 0.0])
  assert metrics.frechet_distance(x, x + shift) == pytest.approx(25.0, rel=1e-6)


def test_frechet_distance_of_two_gaussians_with_known_covariances():
  # 1-D: (mu1 - mu2)^2 + (s1 - s2)^2.
  rng = np.random.default_rng(0)
  a = rng.normal(0, 1, (20000, 1))
  b = rng.normal(1, 3, (20000, 1))
  assert metrics.frechet_distance(a, b) == pytest.approx(1 + 4, rel=0.05)


def test_kernel_distance_near_zero_for_one_distribution_positive_for_two():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
  same = metrics.kernel_distance(a, b)
  assert abs(same) < 0.05
  assert metrics.kernel_distance(a, b + 1.0) > 10 * max(abs(same), 1e-3)


def test_kernel_distance_matches_direct_formula():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))
  k = lambda x, y: (x @ y / 3 + 1) ** 3
  xx = np.mean([k(a[i], a[j]) for i in range(5) for j in range(5) if i != j])
  yy = np.mean([k(b[i], b[j]) for i in range(4) for j in range(4) if i != j])
  xy = np.mean([k(a[i], b[j]) for i in range(5) for j in range(4)])
  assert metrics.kernel_distance(a, b) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)
