"""Image metrics of the paper's validation, and distances that need no downloaded weights.

All images are [N, 64, 64] in the project orientation (row 0 anterior, column 0
the patient's right) and are scaled to their own maximum first, as the paper
measures "max-normalised" slices: a generated image's brightness scale then
cannot hide or fake a difference in shape.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from spect_fastgan_jax.data.stats import lr_ratio, mean_counts, normalise

__all__ = ["normalise", "mean_counts", "image_sd", "lr_ratio", "mean_map", "sd_map",
           "mean_pixelwise_sd", "ms_ssim", "pairwise_ms_ssim", "frechet_distance",
           "kernel_distance", "column_centroid"]


def image_sd(images: np.ndarray) -> np.ndarray:
  """images: [N, H, W] -> [N] SD over the pixels of each max-normalised image.

  A per-image contrast measure (grey/white/background spread); unlike the
  pixel-wise SD map it is one number per image, so it can go into an ANOVA.
  """
  return normalise(images).reshape(len(images), -1).std(axis=1)


def mean_map(images: np.ndarray) -> np.ndarray:
  """images: [N, H, W] -> [H, W] pixel-wise mean of the max-normalised images."""
  return normalise(images).mean(axis=0)


def sd_map(images: np.ndarray) -> np.ndarray:
  """images: [N, H, W] -> [H, W] pixel-wise SD across the max-normalised images
  (the paper's inter-slice variation map, Fig. 6); 0 everywhere if N < 2."""
  x = normalise(images)
  return x.std(axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1:], np.float32)


def mean_pixelwise_sd(images: np.ndarray) -> float:
  """Mean of sd_map over all pixels: one number for a group's diversity."""
  return float(sd_map(images).mean())


# --- MS-SSIM -------------------------------------------------------------------
# The standard MS-SSIM (Wang et al. 2003) uses 5 scales and an 11-pixel window,
# which at 64 x 64 leaves a 4 x 4 image at the coarsest scale, smaller than the
# window. We keep 3 scales (64, 32, 16 px) with a 7-pixel Gaussian window
# (sigma 1.5) and the first three of the standard exponents, renormalised.
_WEIGHTS = np.array([0.0448, 0.2856, 0.3001]) / (0.0448 + 0.2856 + 0.3001)
_WIN, _SIGMA = 7, 1.5
_K1, _K2 = 0.01, 0.03   # the standard constants, for a data range of 1


def _window() -> np.ndarray:
  t = np.arange(_WIN) - (_WIN - 1) / 2
  g = np.exp(-t ** 2 / (2 * _SIGMA ** 2))
  g /= g.sum()
  return np.outer(g, g).astype(np.float32)


def _filter(x: jax.Array) -> jax.Array:
  """[P, H, W] -> [P, H-6, W-6] Gaussian-weighted local means ('valid')."""
  w = jnp.asarray(_window())[:, :, None, None]
  return jax.lax.conv_general_dilated(x[..., None], w, (1, 1), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))[..., 0]


@jax.jit
def _ms_ssim(a: jax.Array, b: jax.Array) -> jax.Array:
  c1, c2 = _K1 ** 2, _K2 ** 2
  out = jnp.ones(a.shape[0])
  for s, w in enumerate(_WEIGHTS):
    mu_a, mu_b = _filter(a), _filter(b)
    var_a = _filter(a * a) - mu_a ** 2
    var_b = _filter(b * b) - mu_b ** 2
    cov = _filter(a * b) - mu_a * mu_b
    cs = jnp.mean((2 * cov + c2) / (var_a + var_b + c2), axis=(1, 2))
    if s == len(_WEIGHTS) - 1:
      lum = jnp.mean((2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1), axis=(1, 2))
      cs = cs * lum
    # Negative structure terms (anti-correlated images) would make the power
    # undefined; clipping at 0 scores them as "no similarity".
    out = out * jnp.maximum(cs, 0.0) ** w
    p, h, wd = a.shape
    a = a.reshape(p, h // 2, 2, wd // 2, 2).mean(axis=(2, 4))
    b = b.reshape(p, h // 2, 2, wd // 2, 2).mean(axis=(2, 4))
  return out


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """MS-SSIM of image pairs. a, b: [P, 64, 64] (each max-normalised first) -> [P] in [0, 1];
  1 for identical images."""
  return np.asarray(_ms_ssim(jnp.asarray(normalise(a)), jnp.asarray(normalise(b))))


def pairwise_ms_ssim(images: np.ndarray, max_pairs: int = 200, seed: int = 0) -> float:
  """Mean MS-SSIM over distinct pairs of a group [N, 64, 64]; NaN if N < 2.

  All pairs if there are at most `max_pairs`, else `max_pairs` pairs drawn at
  random (fixed seed): the mean converges fast and the cost stays bounded.
  High values mean the images look alike: a collapsed generator scores near 1.
  """
  n = len(images)
  if n < 2:
    return float("nan")
  i, j = np.triu_indices(n, k=1)
  if len(i) > max_pairs:
    pick = np.random.default_rng(seed).choice(len(i), max_pairs, replace=False)
    i, j = i[pick], j[pick]
  return float(ms_ssim(images[i], images[j]).mean())


# --- Distances between feature distributions -----------------------------------

def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to features a [N, D] and b [M, D]:
  |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)). Biased upwards for small N."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu = a.mean(0) - b.mean(0)
  sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
  with warnings.catch_warnings():
    # With fewer samples than feature dimensions the covariances are singular; the
    # square root still exists (the distance is then biased, as the docstring says).
    warnings.simplefilter("ignore", linalg.LinAlgWarning)
    covmean = linalg.sqrtm(sa @ sb)
  if np.iscomplexobj(covmean):  # round-off of a near-singular product
    covmean = covmean.real
  return float(max(mu @ mu + np.trace(sa + sb - 2 * covmean), 0.0))


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
  """Unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3
  (the KID of Binkowski et al. 2018). a: [N, D], b: [M, D], N, M >= 2.

  Unbiased: its expectation is 0 when a and b come from one distribution, so small
  groups can give small negative values.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  d = a.shape[1]
  k = lambda x, y: (x @ y.T / d + 1.0) ** 3
  kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
  n, m = len(a), len(b)
  return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1))
               + (kbb.sum() - np.trace(kbb)) / (m * (m - 1)) - 2 * kab.mean())


def column_centroid(images: np.ndarray) -> np.ndarray:
  """images: [N, H, W] -> [N] intensity-weighted mean column (0 = the patient's right edge).

  A left/right offset of a whole generated brain moves this and, because LR splits
  the image at column W/2, biases LR without any defect.
  """
  x = normalise(images)
  cols = np.arange(x.shape[-1], dtype=np.float64)
  return (x.sum(axis=1) * cols).sum(axis=1) / np.maximum(x.sum(axis=(1, 2)), 1e-12)
