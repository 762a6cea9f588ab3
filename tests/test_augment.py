import jax
import jax.numpy as jnp
import numpy as np

from spect_fastgan_jax import augment


def _asymmetric(b):
  """Slices whose left-right flip is detectable: a ramp along columns."""
  ramp = np.tile(np.linspace(0.1, 1.0, 64, dtype=np.float32), (64, 1))
  return jnp.asarray(np.broadcast_to(ramp, (b, 3, 64, 64)).copy())


def test_unilateral_slices_are_never_flipped():
  x = _asymmetric(64)
  flip_ok = jnp.zeros(64, bool)
  for seed in range(5):
    out = augment.augment(jax.random.PRNGKey(seed), x, flip_ok, blend=False, max_shift=0)
    np.testing.assert_array_equal(out, x[:, 1])


def test_normal_slices_flip_about_half_the_time():
  x = _asymmetric(400)
  out = augment.augment(jax.random.PRNGKey(0), x, jnp.ones(400, bool), blend=False, max_shift=0)
  flipped = np.asarray(out[:, 0, 0] > out[:, 0, -1])
  assert 0.4 < flipped.mean() < 0.6
  np.testing.assert_array_equal(np.asarray(out[flipped]), np.asarray(x[flipped, 1, :, ::-1]))


def test_shift_is_within_two_rows_with_zero_fill():
  b = 300
  img = np.zeros((b, 3, 64, 64), np.float32)
  img[:, :, 30, :] = 1.0  # one bright row
  out = np.asarray(augment.augment(jax.random.PRNGKey(1), jnp.asarray(img), jnp.zeros(b, bool),
                                   blend=False, max_shift=2))
  rows = out.max(axis=2).argmax(axis=1)
  assert set(rows.tolist()) == {28, 29, 30, 31, 32}
  shifted = augment.shift_rows(jnp.ones((2, 64, 64)), jnp.array([2, -2]))
  np.testing.assert_array_equal(np.asarray(shifted[0, :2]), 0)
  np.testing.assert_array_equal(np.asarray(shifted[1, -2:]), 0)
  np.testing.assert_array_equal(np.asarray(shifted[:, 2:-2]), 1)


def test_blend_lies_between_the_slice_and_one_neighbour():
  b = 200
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 1, (b, 3, 64, 64)).astype(np.float32)
  out = np.asarray(augment.augment(jax.random.PRNGKey(2), jnp.asarray(x), jnp.zeros(b, bool),
                                   blend=True, max_shift=0))
  centre = x[:, 1]
  used_below = used_above = 0
  for k in range(b):
    for nb, name in ((0, "below"), (2, "above")):
      lo, hi = np.minimum(centre[k], x[k, nb]), np.maximum(centre[k], x[k, nb])
      if np.all(out[k] >= lo - 1e-6) and np.all(out[k] <= hi + 1e-6):
        used_below += name == "below"
        used_above += name == "above"
        break
    else:
      raise AssertionError(f"sample {k} is not a blend of the slice with a neighbour")
  assert used_below > 50 and used_above > 50


def test_normalise_puts_each_slice_peak_at_one():
  x = jnp.asarray(np.random.default_rng(0).uniform(0, 300, (4, 3, 64, 64)).astype(np.float32))
  peaks = np.asarray(augment.normalise(x).max(axis=(2, 3)))
  np.testing.assert_allclose(peaks, 1.0, rtol=1e-6)


def test_the_configs_flip_field_turns_the_flip_on_and_off():
  """config.augment.flip reaches the real batch D sees (step.real_batch)."""
  from configs import dataset_a
  from spect_fastgan_jax import input_pipeline, step
  b = 200
  x = _asymmetric(b)
  batch = input_pipeline.Batch(real3=x, cond=jnp.zeros((b, 6)), flip_ok=jnp.ones(b, bool), spread=jnp.ones(b))
  aug = dataset_a.get_config().augment
  aug.blend, aug.max_shift = False, 0
  flipped = {}
  for flip in (True, False):
    aug.flip = flip
    out = np.asarray(step.real_batch(jax.random.PRNGKey(0), jax.random.PRNGKey(1), batch, aug, 1.0))
    flipped[flip] = float(np.mean(out[:, 0, 0] > out[:, 0, -1]))
  assert flipped[False] == 0.0 and 0.35 < flipped[True] < 0.65
