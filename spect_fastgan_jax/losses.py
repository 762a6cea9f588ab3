"""Losses of the paper, Eqs. 1-5. Every 5x5 patch logit enters the means."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from spect_fastgan_jax.errors import ConfigError, check_field, is_number

Array = jax.Array


def generator_loss(fake_logits: Array) -> Array:
  """Eq. 1: L_G = -mean D(G(z|y))."""
  return -jnp.mean(fake_logits)


def real_loss(real_logits: Array) -> Array:
  """Eq. 2: L_real = -mean min(0, -1 + D(x))."""
  return -jnp.mean(jnp.minimum(0.0, -1.0 + real_logits))


def fake_loss(fake_logits: Array) -> Array:
  """Eq. 3: L_fake = -mean min(0, -1 - D(x_hat))."""
  return -jnp.mean(jnp.minimum(0.0, -1.0 - fake_logits))


_DISTANCES = {"l1": lambda d: jnp.mean(jnp.abs(d)), "l2": lambda d: jnp.mean(jnp.square(d))}


def _distance_fn(kind: str):
  if kind not in _DISTANCES:
    raise ConfigError(f"config field loss.recon_distance must be 'l1' or 'l2', got {kind!r}")
  return _DISTANCES[kind]


def check_config(loss_config) -> None:
  """Raises ConfigError naming the first bad field of `config.loss`."""
  _distance_fn(loss_config.recon_distance)
  v = loss_config.mode_seeking
  check_field(is_number(v) and math.isfinite(v) and v >= 0, "loss.mode_seeking", v, "must be a number >= 0")
  v = loss_config.condition_aux
  check_field(is_number(v) and math.isfinite(v) and v >= 0, "loss.condition_aux", v, "must be a number >= 0")
  v = loss_config.mode_seeking_target
  check_field(is_number(v) and math.isfinite(v) and v > 0, "loss.mode_seeking_target", v,
              "must be a number > 0")


def distance(a: Array, b: Array, kind: str = "l1") -> Array:
  """Mean pixel distance between two image batches: 'l1' (paper) or 'l2' (squared)."""
  return _distance_fn(kind)(a - b)


def recon_loss(rec_crop: Array, crop_target: Array, rec_full: Array, full_target: Array,
               kind: str = "l1") -> Array:
  """Eq. 4: |G1(B1(x)) - T(x)| + |G2(B2(x)) - x|, on real images only."""
  return distance(rec_crop, crop_target, kind) + distance(rec_full, full_target, kind)


def mode_seeking_loss(fake_a: Array, fake_b: Array, spread: Array, target: float = 1.0):
  """A mode-seeking term for G that fades once its images are as varied as the data.

  MSGAN (Mao et al., CVPR 2019) makes two images of one condition from two
  latents and rewards their distance; a constant pull keeps pushing the variety
  past the real one. Here each pair's distance is measured against `spread`, the
  mean distance of two real slices of that condition, and the term is a hinge:
  mean(max(0, target - |a - b| / spread)). It is zero, and pulls no more, once a
  pair is `target` times as far apart as two real slices.

  Args:
    fake_a, fake_b: [B, 64, 64, 1] two images of each condition from different z.
    spread: [B] the real pair distance of each row's condition (same range).
    target: the share of the real spread at which the term stops.

  Returns:
    (loss, mean ratio |a - b| / spread), both scalars.
  """
  ratio = jnp.mean(jnp.abs(fake_a - fake_b), axis=(1, 2, 3)) / spread
  return jnp.mean(jnp.maximum(0.0, target - ratio)), jnp.mean(jax.lax.stop_gradient(ratio))


def condition_aux_loss(aux_logits: Array, cond: Array) -> Array:
  """The auxiliary classifier's loss (AC-GAN): sigmoid cross-entropy of each entry
  of the 0/1 condition vector, summed over the entries and averaged over the batch,
  so both encodings (6 entries for dataset A, 3 for B) need no block layout."""
  return jnp.mean(jnp.sum(optax.sigmoid_binary_cross_entropy(aux_logits, cond), axis=-1))
