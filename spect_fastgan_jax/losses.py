"""Losses of the paper, Eqs. 1-5. Every 5x5 patch logit enters the means."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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


def distance(a: Array, b: Array, kind: str = "l1") -> Array:
  """Mean pixel distance between two image batches: 'l1' (paper) or 'l2' (squared)."""
  if kind == "l1":
    return jnp.mean(jnp.abs(a - b))
  if kind == "l2":
    return jnp.mean(jnp.square(a - b))
  raise ValueError(f"config field loss.recon_distance must be 'l1' or 'l2', got {kind!r}")


def recon_loss(rec_crop: Array, crop_target: Array, rec_full: Array, full_target: Array,
               kind: str = "l1") -> Array:
  """Eq. 4: |G1(B1(x)) - T(x)| + |G2(B2(x)) - x|, on real images only."""
  return distance(rec_crop, crop_target, kind) + distance(rec_full, full_target, kind)
