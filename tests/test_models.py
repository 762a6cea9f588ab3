import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import dataset_a, dataset_b, default
from spect_fastgan_jax import layers, models, train, train_state


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


# docs/model.md, "Parameter counts" (the README quotes the first row): G, D with its
# decoders, and the decoders alone, with the aux head where the variant has one; and
# D's input channels: the paper's D sees the image and a conditional image (1 + C), the
# recipe's projection D the image alone.
PARAMETER_COUNTS = [
    (dataset_a.get_config, "", 1 + 6, 2_114_404, 2_836_448, 1_256_320),
    (dataset_b.get_config, "", 1 + 3, 2_114_212, 2_835_584, 1_256_320),
    (dataset_a.get_config, "recipe", 1, 2_133_605, 2_838_054, 1_256_320),
    (dataset_a.get_config, "cpu", 1, 262_677, 182_230, 79_072),
]


@pytest.mark.parametrize("get, variant, in_channels, g_count, d_count, dec_count", PARAMETER_COUNTS,
                         ids=["A-paper", "B-paper", "A-recipe", "A-cpu"])
def test_parameter_counts_are_the_documented_ones(get, variant, in_channels, g_count, d_count, dec_count):
  config = default.with_variant(get(), variant)
  g, d = train.networks(config)
  shapes = jax.eval_shape(lambda: train_state.init_variables(config, g, d, jax.random.PRNGKey(0)))
  g_params, d_params = shapes[0]["params"], shapes[1]["params"]
  assert (_count(g_params), _count(d_params)) == (g_count, d_count)
  assert _count(d_params["dec_global"]) + _count(d_params["dec_region"]) == dec_count
  assert d_params["in_conv"]["w"]["kernel"].shape[2] == in_channels


def test_shapes_and_value_ranges(tiny_config_a):
  config = tiny_config_a
  g, d = models.from_config(config.model)
  g_vars, d_vars = train_state.init_variables(config, g, d, jax.random.PRNGKey(0))
  b = 3
  z = jax.random.normal(jax.random.PRNGKey(1), (b, config.model.z_dim)) * 3
  y = jnp.eye(6)[:b]
  out, _ = g.apply(g_vars, z, y, jax.random.split(jax.random.PRNGKey(2), b), train=True,
                   mutable=["batch_stats"])
  assert out.shape == (b, 64, 64, 1)
  assert float(jnp.min(out)) >= -1 and float(jnp.max(out)) <= 1
  assert float(jnp.std(out)) > 0
  logits, rec_full, rec_crop = d.apply(d_vars, out, y, train=False,
                                       crop_offsets=jnp.array([[0, 0], [8, 8], [3, 5]]))
  assert logits.shape == (b, 5, 5)
  assert rec_full.shape == (b, 64, 64, 1) and rec_crop.shape == (b, 32, 32, 1)
  assert float(jnp.max(jnp.abs(rec_full))) <= 1 and float(jnp.max(jnp.abs(rec_crop))) <= 1
  assert d.apply(d_vars, out, y, train=False).shape == (b, 5, 5)


def test_crop_target_takes_the_matching_32px_window():
  x = jnp.arange(64 * 64, dtype=jnp.float32).reshape(1, 64, 64, 1)
  t = models.crop_target(jnp.concatenate([x, x]), jnp.array([[0, 0], [8, 3]]))
  np.testing.assert_array_equal(t[0, ..., 0], x[0, :32, :32, 0])
  np.testing.assert_array_equal(t[1, ..., 0], x[0, 32:64, 12:44, 0])


def test_spectral_norm_brings_the_top_singular_value_to_one():
  sk = layers.SpectralKernel((3, 3, 4, 6))
  v = sk.init(jax.random.PRNGKey(0), update_stats=False)
  v = {"params": jax.tree_util.tree_map(lambda p: p * 50.0, v["params"]), "batch_stats": v["batch_stats"]}
  for _ in range(30):  # power iteration converges over training calls
    w, upd = sk.apply(v, update_stats=True, mutable=["batch_stats"])
    v = {"params": v["params"], "batch_stats": upd["batch_stats"]}
  top = np.linalg.svd(np.asarray(w).reshape(-1, 6), compute_uv=False)[0]
  assert top == pytest.approx(1.0, rel=1e-3)
  # In eval the stored vector is not updated.
  _, upd = sk.apply(v, update_stats=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(upd["batch_stats"]["u"], v["batch_stats"]["u"])


def test_generator_in_eval_mode_ignores_the_rest_of_the_batch(tiny_config_a):
  config = tiny_config_a
  g, d = models.from_config(config.model)
  g_vars, _ = train_state.init_variables(config, g, d, jax.random.PRNGKey(0))
  # Make noise injection matter, so that per-sample noise keys are exercised.
  g_vars = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.5 if "scale" in jax.tree_util.keystr(p) else x, g_vars)
  z = jax.random.normal(jax.random.PRNGKey(1), (5, config.model.z_dim))
  y = jnp.eye(6)[jnp.array([0, 3, 1, 4, 5])]
  keys = jax.random.split(jax.random.PRNGKey(2), 5)
  full = g.apply(g_vars, z, y, keys, train=False)
  part = g.apply(g_vars, z[1:3], y[1:3], keys[1:3], train=False)
  np.testing.assert_allclose(part, full[1:3], atol=1e-6)


def test_bad_model_config_fields_are_named(tiny_config_a):
  config = tiny_config_a
  config.model.g_channels = (8, 8)
  with pytest.raises(ValueError, match="model.g_channels"):
    models.from_config(config.model)
  config = dataset_a.get_config()
  config.model.dtype = "float8"
  with pytest.raises(ValueError, match="model.dtype"):
    models.from_config(config.model)
  config.model.conv_impl = "fft"
  with pytest.raises(ValueError, match="model.conv_impl"):
    models.from_config(config.model)


@pytest.mark.parametrize("h, w, ci, co", [(4, 4, 3, 5), (5, 3, 2, 4), (8, 8, 16, 8)])
def test_sub_pixel_form_is_upsample_then_conv3x3(h, w, ci, co):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, h, w, ci))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, ci, co))
  want = jax.lax.conv_general_dilated(layers.upsample2(x), k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = layers.upsample_conv3x3(x, k)
  assert got.shape == (2, 2 * h, 2 * w, co)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Same gradients, for inputs and weights.
  cot = jax.random.normal(jax.random.PRNGKey(2), want.shape)
  f_want = lambda x, k: jnp.sum(jax.lax.conv_general_dilated(
      layers.upsample2(x), k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) * cot)
  f_got = lambda x, k: jnp.sum(layers.upsample_conv3x3(x, k) * cot)
  for a, b in zip(jax.grad(f_got, (0, 1))(x, k), jax.grad(f_want, (0, 1))(x, k)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv_impls_share_parameters_and_compute_the_same_networks(tiny_config_a):
  config = tiny_config_a
  nets = {}
  for impl in layers.CONV_IMPLS:
    config.model.conv_impl = impl
    nets[impl] = models.from_config(config.model)
  g_vars, d_vars = train_state.init_variables(config, *nets["xla"], jax.random.PRNGKey(0))
  g_m, d_m = train_state.init_variables(config, *nets["matmul"], jax.random.PRNGKey(0))
  assert jax.tree_util.tree_structure(g_vars) == jax.tree_util.tree_structure(g_m)
  assert jax.tree_util.tree_structure(d_vars) == jax.tree_util.tree_structure(d_m)
  b = 3
  z = jax.random.normal(jax.random.PRNGKey(1), (b, config.model.z_dim))
  y = jnp.eye(6)[:b]
  keys = jax.random.split(jax.random.PRNGKey(2), b)
  offsets = jnp.array([[0, 0], [8, 8], [3, 5]])

  def losses(impl, gp, dp):
    g, d = nets[impl]
    img, _ = g.apply({"params": gp, "batch_stats": g_vars["batch_stats"]}, z, y, keys, train=True,
                     mutable=["batch_stats"])
    (logits, rec_full, rec_crop), _ = d.apply({"params": dp, "batch_stats": d_vars["batch_stats"]},
                                              img, y, train=True, crop_offsets=offsets,
                                              mutable=["batch_stats"])
    return jnp.mean(logits) + jnp.mean(rec_full ** 2) + jnp.mean(rec_crop ** 2), img

  (lx, img_x), gx = jax.value_and_grad(losses, (1, 2), has_aux=True)("xla", g_vars["params"],
                                                                      d_vars["params"])
  (lm, img_m), gm = jax.value_and_grad(losses, (1, 2), has_aux=True)("matmul", g_vars["params"],
                                                                     d_vars["params"])
  np.testing.assert_allclose(img_m, img_x, atol=1e-5)
  assert float(lm) == pytest.approx(float(lx), rel=1e-5, abs=1e-6)
  for a, b_ in zip(jax.tree_util.tree_leaves(gm), jax.tree_util.tree_leaves(gx)):
    np.testing.assert_allclose(a, b_, rtol=1e-3, atol=1e-5)


def test_auto_conv_impl_picks_matmul_on_cpu_only():
  assert layers.resolve_conv_impl("auto", "cpu") == "matmul"
  assert layers.resolve_conv_impl("auto", "gpu") == "xla"
  assert layers.resolve_conv_impl("xla", "cpu") == "xla"


def _generate(config, variables, keys_seed):
  g, _ = models.from_config(config.model)
  b = 3
  z = jax.random.normal(jax.random.PRNGKey(1), (b, config.model.z_dim))
  out, _ = g.apply(variables, z, jnp.eye(6)[:b], jax.random.split(jax.random.PRNGKey(keys_seed), b),
                   train=True, mutable=["batch_stats"])
  return np.asarray(out)


def _g_variables(config):
  g, d = models.from_config(config.model)
  return train_state.init_variables(config, g, d, jax.random.PRNGKey(0))[0]


def test_noise_injection_adds_per_pixel_noise_only_when_on(tiny_config_a):
  config = tiny_config_a
  config.model.noise_injection = True
  variables = _g_variables(config)
  scales = [p for path, p in jax.tree_util.tree_leaves_with_path(variables["params"])
            if "noise" in jax.tree_util.keystr(path)]
  assert len(scales) == 4   # two convs in each of up8 and up32
  # The learned scale starts at 0 (FastGAN); once it is not 0 the noise keys matter.
  loud = jax.tree_util.tree_map_with_path(
      lambda path, p: jnp.ones_like(p) if "noise" in jax.tree_util.keystr(path) else p, variables)
  assert not np.allclose(_generate(config, loud, 2), _generate(config, loud, 3))
  config.model.noise_injection = False
  variables = _g_variables(config)
  assert not any("noise" in jax.tree_util.keystr(path)
                 for path, _ in jax.tree_util.tree_leaves_with_path(variables["params"]))
  np.testing.assert_array_equal(_generate(config, variables, 2), _generate(config, variables, 3))


def test_sle_slope_is_the_excitation_gates_leaky_relu_slope(tiny_config_a):
  config = tiny_config_a
  variables = _g_variables(config)
  config.model.sle_slope = 0.1
  first = _generate(config, variables, 2)
  np.testing.assert_array_equal(_generate(config, variables, 2), first)
  config.model.sle_slope = 0.5
  assert not np.allclose(_generate(config, variables, 2), first)
