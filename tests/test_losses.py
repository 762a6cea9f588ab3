import jax.numpy as jnp
import numpy as np
import pytest

from spect_fastgan_jax import losses

LOGITS = jnp.array([[-2.0, -0.5], [0.5, 3.0]])


def test_real_hinge_by_hand():
  # -mean(min(0, -1 + d)) over (-2, -0.5, 0.5, 3): terms 3, 1.5, 0.5, 0 -> 5 / 4
  assert float(losses.real_loss(LOGITS)) == pytest.approx(1.25)


def test_fake_hinge_by_hand():
  # -mean(min(0, -1 - d)): terms 0, 0.5, 1.5, 4 -> 6 / 4
  assert float(losses.fake_loss(LOGITS)) == pytest.approx(1.5)


def test_generator_loss_by_hand():
  assert float(losses.generator_loss(LOGITS)) == pytest.approx(-0.25)


def test_recon_l1_and_l2_by_hand():
  a, b = jnp.zeros((2, 4, 4, 1)), jnp.full((2, 4, 4, 1), 0.5)
  c, d = jnp.zeros((2, 8, 8, 1)), jnp.full((2, 8, 8, 1), -2.0)
  assert float(losses.recon_loss(a, b, c, d, "l1")) == pytest.approx(0.5 + 2.0)
  assert float(losses.recon_loss(a, b, c, d, "l2")) == pytest.approx(0.25 + 4.0)


def test_unknown_distance_is_named():
  with pytest.raises(ValueError, match="loss.recon_distance"):
    losses.distance(jnp.zeros(2), jnp.zeros(2), "l3")
