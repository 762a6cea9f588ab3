"""The fidelity options (docs/fidelity.md): each config field does what it says, and a
short run with all of them on trains and logs the diversity curve."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import data as data_config
from configs import dataset_a, dataset_b
from conftest import make_tiny, toy_dataset
from test_side_condition import sided_toy
from spect_fastgan_jax import augment, conditions, losses, models, modes, runlog, train
from spect_fastgan_jax import step as step_lib
from spect_fastgan_jax.evaluation import monitor as monitor_lib
from spect_fastgan_jax import errors
from spect_fastgan_jax import input_pipeline
from spect_fastgan_jax import sample
from spect_fastgan_jax import train_state
from spect_fastgan_jax import workdir as workdir_lib

_quiet = lambda msg: None


def _small_evaluate(config):
  config.evaluate.classifier.widths = (4, 8, 8)
  config.evaluate.classifier.features = 16
  config.evaluate.classifier.steps = 20
  config.evaluate.ms_ssim_pairs = 20
  return config


def _brain(b=6):
  """[B, 64, 64, 1] in [-1, 1]: a bright disc on a zero-count (-1) background."""
  yy, xx = np.mgrid[:64, :64]
  img = np.where(np.hypot(yy - 30, xx - 34) < 20, 1.0, -1.0).astype(np.float32)
  return jnp.asarray(np.repeat(img[None, :, :, None], b, 0))


def test_diff_augment_moves_rows_only_and_passes_gradients():
  x = _brain()
  out = augment.diff_augment(jax.random.PRNGKey(0), x, max_shift=6)
  # Columns keep their counts (a left/right move would change them), rows may not.
  col_sums = lambda a: np.asarray(jnp.sum(a[..., 0] + 1, axis=1))
  np.testing.assert_allclose(col_sums(out), col_sums(x), atol=1e-4)
  assert not np.allclose(np.asarray(out), np.asarray(x))
  grad = jax.grad(lambda a: jnp.sum(augment.diff_augment(jax.random.PRNGKey(0), a, max_shift=6,
                                                         intensity=0.3, cutout=0.25)))(x)
  assert float(jnp.abs(grad).sum()) > 0
  # Everything off: the identity.
  np.testing.assert_array_equal(np.asarray(augment.diff_augment(jax.random.PRNGKey(1), x)), np.asarray(x))


def test_diff_augment_cutout_and_intensity():
  x = _brain(8)
  cut = augment.diff_augment(jax.random.PRNGKey(2), x, cutout=0.25)
  erased = np.asarray((cut != x)[..., 0]).sum(axis=(1, 2))
  assert (erased > 0).any() and (erased <= 16 * 16).all()
  assert float(cut.min()) >= -1.0  # erased pixels are background, never below it
  bright = augment.diff_augment(jax.random.PRNGKey(3), x, intensity=0.5)
  gain = np.asarray((bright[..., 0] + 1).max(axis=(1, 2)) / 2.0)
  assert ((gain >= 0.5) & (gain <= 1.5)).all() and gain.std() > 0.01
  bg = np.asarray(x[..., 0] == -1)
  assert np.all(np.asarray(bright[..., 0])[bg] == -1.0)  # zero counts stay zero


def test_mode_seeking_pulls_identical_pairs_apart_and_stops_at_the_target():
  a = _brain(4)
  spread = jnp.full(4, 0.5)
  loss, ratio = losses.mode_seeking_loss(a, a, spread, target=1.0)
  assert float(loss) == pytest.approx(1.0) and float(ratio) == 0.0
  grad_b = jax.grad(lambda b: losses.mode_seeking_loss(a, b, spread)[0])(a + 0.01)
  # Descending the loss moves b away from a.
  assert float(jnp.sum(grad_b * (a + 0.01 - a))) < 0
  far = a + 0.6  # mean |a - b| = 0.6 > 0.5 * target
  loss_far, ratio_far = losses.mode_seeking_loss(a, far, spread, target=1.0)
  assert float(loss_far) == 0.0 and float(ratio_far) == pytest.approx(1.2)
  assert float(jnp.abs(jax.grad(lambda b: losses.mode_seeking_loss(a, b, spread)[0])(far)).sum()) == 0


def test_condition_aux_loss_rewards_the_right_condition():
  cond = jnp.asarray([[1.0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1]])
  right, wrong = losses.condition_aux_loss(8 * cond - 4, cond), losses.condition_aux_loss(4 - 8 * cond, cond)
  assert float(right) < 0.2 < 10 < float(wrong)
  # Summed over the entries: half as many entries (dataset B), half the loss at zero logits.
  assert float(losses.condition_aux_loss(jnp.zeros((2, 6)), cond)) == pytest.approx(6 * np.log(2), rel=1e-5)
  assert float(losses.condition_aux_loss(jnp.zeros((2, 3)), cond[:, 3:])) == pytest.approx(3 * np.log(2), rel=1e-5)


def test_condition_aux_trains_d_head_on_real_and_pulls_g(tiny_config_a, toy_a):
  config = tiny_config_a
  data = input_pipeline.device_data(toy_a, config.data.levels)
  batch = input_pipeline.gather(data, jnp.arange(config.batch_size))
  key = jax.random.PRNGKey(3)
  g, d = models.from_config(config.model, aux_head=True)
  state = train_state.create_train_state(config, g, d)
  assert "aux_head" in state.d_params
  after = {}
  for w in (0.0, 1.0):
    config.loss.condition_aux = w
    after[w], metrics = step_lib.make_train_step(config, g, d)(
        jax.tree_util.tree_map(jnp.copy, state), batch, key)
    assert ("aux_real" in metrics) == (w > 0)
  moved = lambda a, b: any(not np.allclose(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
  assert moved(after[1.0].d_params["aux_head"], state.d_params["aux_head"])
  assert not moved(after[0.0].d_params["aux_head"], state.d_params["aux_head"])
  assert moved(after[1.0].g_params, after[0.0].g_params)  # G feels the head's loss
  _, plain_d = models.from_config(config.model)
  with pytest.raises(errors.ConfigError, match=r"loss\.condition_aux"):
    step_lib.make_train_step(config, g, plain_d)   # before any tracing


def test_condition_aux_head_takes_dataset_b_three_dim_condition(tiny_config_b):
  config = tiny_config_b
  config.loss.condition_aux = 0.5
  data = input_pipeline.device_data(toy_dataset(2, levels=("COR",)), config.data.levels)
  batch = input_pipeline.gather(data, jnp.arange(config.batch_size))
  assert batch.cond.shape[-1] == 3
  g, d = train.networks(config)
  state = train_state.create_train_state(config, g, d)
  assert any(leaf.shape[-1] == 3 for leaf in jax.tree_util.tree_leaves(state.d_params["aux_head"]))
  _, metrics = step_lib.make_train_step(config, g, d)(state, batch, jax.random.PRNGKey(0))
  # At initialisation the head is near chance: about 3 x log 2 per slice, finite.
  assert 0.5 < float(metrics["aux_real"]) < 10 and np.isfinite(float(metrics["aux_fake"]))


def test_mode_seeking_pairs_gives_partners_to_that_many_rows_and_costs_less(tiny_config_a, toy_a):
  config = tiny_config_a
  config.loss.mode_seeking = 1.0
  b = config.batch_size
  assert b >= 2
  data = input_pipeline.device_data(toy_a, config.data.levels)
  batch = input_pipeline.gather(data, jnp.arange(b))
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  out, flops = {}, {}
  for pairs in (0, b, 1):
    config.loss.mode_seeking_pairs = pairs
    train.check_config(config)
    step = jax.jit(step_lib.make_train_step(config, g, d))
    flops[pairs] = step.lower(state, batch, jax.random.PRNGKey(5)).compile().cost_analysis()
    flops[pairs] = (flops[pairs][0] if isinstance(flops[pairs], list) else flops[pairs])["flops"]
    out[pairs] = step(jax.tree_util.tree_map(jnp.copy, state), batch, jax.random.PRNGKey(5))
  leaves = lambda s: jax.tree_util.tree_leaves(s.g_params)
  # 0 means every row: the same step as naming the batch size.
  assert all(np.array_equal(x, y) for x, y in zip(leaves(out[0][0]), leaves(out[b][0])))
  assert not all(np.allclose(x, y) for x, y in zip(leaves(out[0][0]), leaves(out[1][0])))
  # One partner instead of b: G's second batch shrinks from b images to one.
  assert flops[1] < 0.9 * flops[0]
  # The pair's distance is that of row 0 and its partner only.
  assert np.isfinite(float(out[1][1]["pair_spread"]))
  assert float(out[1][1]["pair_spread"]) != pytest.approx(float(out[0][1]["pair_spread"]))


def test_lr_decay_scales_both_updates_over_the_last_epochs(tiny_config_a, toy_a):
  factor = lambda e: float(train_state.lr_factor(jnp.asarray(e, jnp.int32), 10, 4))
  assert [factor(e) for e in range(10)] == pytest.approx([1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
  config = tiny_config_a
  config.num_epochs = 10
  data = input_pipeline.device_data(toy_a, config.data.levels)
  batch = input_pipeline.gather(data, jnp.arange(config.batch_size))
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d).replace(epoch=jnp.asarray(8, jnp.int32))
  moves = {}
  for decay in (0, 4):
    config.optim.lr_decay_epochs = decay
    train.check_config(config)
    after, _ = step_lib.make_train_step(config, g, d)(jax.tree_util.tree_map(jnp.copy, state), batch,
                                                      jax.random.PRNGKey(5))
    moves[decay] = {net: jax.tree_util.tree_map(lambda a, b: a - b, getattr(after, net), getattr(state, net))
                    for net in ("g_params", "d_params")}
  for net in ("g_params", "d_params"):
    full = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(moves[0][net])])
    decayed = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(moves[4][net])])
    assert np.abs(full).max() > 0
    np.testing.assert_allclose(decayed, 0.5 * full, atol=1e-7 + 1e-3 * np.abs(full).max())


def test_condition_spread_is_per_condition():
  rng = np.random.default_rng(0)
  images = np.concatenate([np.full((5, 64, 64), 0.5), rng.uniform(0, 1, (5, 64, 64))]).astype(np.float32)
  level = ["BG"] * 10
  pattern = ["normal"] * 5 + ["unilateral"] * 5
  s = input_pipeline.condition_spread(images, level, pattern)
  assert np.all(s[:5] == 1e-6)                                 # identical slices: the floor
  assert np.allclose(s[5:], s[5]) and 0.5 < s[5] < 0.8         # uniform pairs: 2 * 1/3 in [-1, 1]


def test_condition_spread_is_the_same_in_every_process():
  # The mode-seeking term trains against these spreads, and a resumed run is another
  # process: Python's hash seed (which orders a set of strings) must not change them.
  code = ("import numpy as np; from spect_fastgan_jax import input_pipeline as ip; "
          "r = np.random.default_rng(1); n = 60; "
          "lv = np.array(['CER', 'BG', 'COR'] * 20); pt = np.array(['normal'] * 30 + ['unilateral'] * 30); "
          "print(ip.condition_spread(r.uniform(0, 1, (n, 64, 64)).astype(np.float32), lv, pt, pairs=50).tobytes().hex())")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                        env={**os.environ, "PYTHONHASHSEED": str(h), "JAX_PLATFORMS": "cpu"}).stdout
         for h in (1, 2, 3, 4)}
  assert len(out) == 1


def test_generator_and_discriminator_condition_modes(tiny_config_a):
  config = tiny_config_a
  z = jax.random.normal(jax.random.PRNGKey(0), (2, config.model.z_dim))
  keys = jax.random.split(jax.random.PRNGKey(1), 2)
  y = jnp.asarray(conditions.encode(config.data.levels, ["BG", "BG"], ["normal", "unilateral"]))
  x = _brain(2)
  for g_cond, d_cond in (("cbn", "projection"), ("concat", "both")):
    config.model.g_cond, config.model.d_cond = g_cond, d_cond
    config.model.noise_full_res = True
    g, d = models.from_config(config.model)
    gv = g.init({"params": jax.random.PRNGKey(2)}, z, y, keys, train=False)
    dv = d.init({"params": jax.random.PRNGKey(3)}, x, y, train=False)
    assert "noise0" in gv["params"]["up64"]
    if g_cond == "cbn":
      # A condition-dependent scale and shift in every block of G: once they are not
      # zero, the same z and noise give other images for other conditions through them.
      dense = [k for k in gv["params"]["up16"] if "Dense" in k]
      assert len(dense) == 2
      out = lambda v: np.asarray(g.apply(v, z[:1], y[1:], keys[:1], train=False))
      moved = jax.tree_util.tree_map(lambda a: a, gv)
      for k in dense:
        w = moved["params"]["up16"][k]["kernel"]
        moved["params"]["up16"][k]["kernel"] = w + 0.5 * jax.random.normal(jax.random.PRNGKey(5), w.shape)
      assert not np.allclose(out(gv), out(moved), atol=1e-4)
    # 'projection' takes the condition away from D's input; 'both' keeps it there.
    assert dv["params"]["in_conv"]["w"]["kernel"].shape[2] == (1 if d_cond == "projection" else 7)
    if d_cond in ("projection", "both"):
      assert "proj_embed" in dv["params"]
    # With the projection head's embedding set, D's logits depend on y even where
    # the input channels are off.
    dv = jax.tree_util.tree_map(lambda a: a, dv)
    emb = dv["params"]["proj_embed"]["w"]["kernel"]
    dv["params"]["proj_embed"]["w"]["kernel"] = emb + jax.random.normal(jax.random.PRNGKey(4), emb.shape)
    l0 = d.apply(dv, x[:1], y[:1], train=False)
    l1 = d.apply(dv, x[:1], y[1:], train=False)
    assert not np.allclose(np.asarray(l0), np.asarray(l1))
  # Coordinate channels: two more input channels (row, column) beside image and condition.
  config.model.d_coords, config.model.d_cond = True, "input"
  _, d = models.from_config(config.model)
  dv = d.init({"params": jax.random.PRNGKey(3)}, x, y, train=False)
  assert dv["params"]["in_conv"]["w"]["kernel"].shape[2] == 1 + 6 + 2
  # Without noise at 64 px the parameter tree is the paper's.
  config.model.noise_full_res, config.model.g_cond = False, "concat"
  g, _ = models.from_config(config.model)
  assert "noise0" not in g.init({"params": jax.random.PRNGKey(2)}, z, y, keys, train=False)["params"]["up64"]


@pytest.mark.parametrize("field,value", [("model.g_cond", "film"), ("model.d_cond", "late"),
                                         ("loss.mode_seeking", -0.1), ("augment.diff_shift", 40),
                                         ("augment.diff_cutout", 1.5), ("augment.diff_intensity", 1.0),
                                         ("augment.blend_prob", 0.0), ("augment.blend_prob", 1.2),
                                         ("augment.blend_mc_excess", -0.01),
                                         ("augment.blend_mc_excess", 1.0),
                                         ("augment.flip_unilateral", "maybe"),
                                         ("log.monitor_every_epochs", -1),
                                         ("log.monitor_per_condition", 1),
                                         ("loss.mode_seeking_target", 0.0),
                                         ("loss.mode_seeking_pairs", -1),
                                         ("loss.mode_seeking_pairs", 10 ** 3),
                                         ("loss.condition_aux", -0.5),
                                         ("model.output_peak", 0.0), ("model.output_peak", 1.5),
                                         ("data.condition_balance", -0.1),
                                         ("data.condition_balance", 1.5),
                                         ("optim.lr_decay_epochs", -1),
                                         ("optim.lr_decay_epochs", 10 ** 6)])
def test_bad_fidelity_values_are_named(tiny_config_a, field, value):
  block, name = field.split(".")
  tiny_config_a[block][name] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    train.check_config(tiny_config_a)


def test_sampler_statistics_come_from_the_training_conditions(tiny_config_a, toy_a):
  config = tiny_config_a
  config.optim.ema_decay = 0.9
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  state = state.replace(ema_params=jax.tree_util.tree_map(lambda p: p * 1.1, state.ema_params))
  levels = config.data.levels
  only_a = conditions.encode(levels, ["CER"], ["normal"])
  only_b = conditions.encode(levels, ["COR"], ["bilateral"])
  stats = lambda rows: jax.tree_util.tree_leaves(train_state.sampler_variables(state, config, g, rows)["batch_stats"])
  same = [np.allclose(a, b) for a, b in zip(stats(only_a), stats(np.repeat(only_a, 7, 0)))]
  assert all(same)  # drawn from the rows given, whatever their number
  assert not all(np.allclose(a, b) for a, b in zip(stats(only_a), stats(only_b)))


def test_config_variants():
  paper, cpu = dataset_a.get_config(), dataset_a.get_config("cpu")
  assert paper.to_dict() == dataset_a.get_config("paper").to_dict()
  assert paper.optim.b1 == 0.9 and paper.loss.mode_seeking == 0 and paper.optim.ema_decay == 0
  assert cpu.loss.mode_seeking > 0 and cpu.model.g_channels != paper.model.g_channels
  assert (paper.augment.max_shift, paper.augment.blend_prob) == (2, 1.0)
  assert (cpu.augment.max_shift, cpu.augment.blend_mc_excess, cpu.augment.flip_unilateral) == (0, 0.02, "auto")
  assert (paper.augment.blend_mc_excess, paper.augment.flip_unilateral) == (0, False)
  assert cpu.sample.symmetric_flip and not paper.sample.symmetric_flip
  assert cpu.loss.condition_aux == 0.5 and paper.loss.condition_aux == 0
  cpu_paper = dataset_a.get_config("cpu_paper")
  assert cpu_paper.model.g_channels == cpu.model.g_channels and cpu_paper.num_epochs == cpu.num_epochs
  assert cpu_paper.optim.to_dict() == paper.optim.to_dict() and cpu_paper.loss.to_dict() == paper.loss.to_dict()
  recipe_b = dataset_b.get_config("recipe")
  assert recipe_b.data.levels == ("COR",) and recipe_b.model.g_channels == paper.model.g_channels
  assert recipe_b.loss.mode_seeking == cpu.loss.mode_seeking
  with pytest.raises(ValueError, match="unknown config variant 'gpu'"):
    dataset_a.get_config("gpu")
  # A data family joins a schedule with '+', in either order, and changes only data.simulation.
  low = dataset_a.get_config("cpu+lowcount")
  assert low.to_dict() == dataset_a.get_config("lowcount+cpu").to_dict()
  assert low.data.simulation.noise_gm == data_config.FAMILIES["lowcount"][1]["noise_gm"]
  assert low.data.simulation.noise_gm != cpu.data.simulation.noise_gm
  low.data.simulation = cpu.data.simulation
  assert low.to_dict() == cpu.to_dict()
  subtle = dataset_b.get_config("subtle")
  assert subtle.data.simulation.territory_weights.to_dict() == {"MCA": 1 / 3, "ACA": 1 / 3, "PCA": 1 / 3}
  assert subtle.model.g_channels == paper.model.g_channels
  for bad in ("cpu+recipe", "sharp+lowcount", "cpu+bogus"):
    with pytest.raises(ValueError, match="unknown config variant"):
      dataset_a.get_config(bad)
  assert modes.default_workdir("configs/dataset_a.py:cpu") == os.path.join("runs", "dataset_a_cpu")
  assert modes.default_workdir("configs/dataset_b.py") == os.path.join("runs", "dataset_b")
  assert modes.default_workdir("configs/dataset_a.py:cpu+lowcount") == os.path.join("runs", "dataset_a_cpu+lowcount")


def test_a_run_with_every_fidelity_option_trains_and_logs_the_diversity_curve(tmp_path):
  # The CPU schedule's recipe at tiny widths, with the options it leaves off turned on.
  config = _small_evaluate(make_tiny(dataset_a.get_config("cpu")))
  config.num_epochs = 2
  config.optim.ema_decay = 0.999        # crashed at step 1 before (a donated buffer twice)
  config.loss.mode_seeking_target = 0.8
  config.augment.diff_cutout = 0.2
  config.augment.diff_intensity = 0.2
  config.augment.blend_prob = 0.5
  config.model.d_cond = "both"
  config.model.d_coords = True
  config.log.monitor_every_epochs = 1
  config.log.monitor_per_condition = 4
  config.data.condition_balance = 0.5
  config.model.normalise_output = True
  config.loss.condition_aux = 0.5
  config.optim.lr_decay_epochs = 2
  config.loss.mode_seeking_pairs = 1
  config.augment.flip_unilateral = "auto"   # on: half the toy's defects mirrored left
  config.augment.blend_mc_excess = 1e-4   # far below the toy's excess: a share under 0.5
  config.log.sample_every_epochs = 2      # the grid samples with the resolved flip
  said = []
  train.train(config, str(tmp_path), sided_toy(3), log=said.append)
  records = runlog.read(str(tmp_path))
  # What training derived from the slices is what it used and what the run records;
  # config.json keeps the fields as given, so the same command resumes.
  record = json.load(open(tmp_path / "config.json"))
  share = record["derived"]["augment.blend_prob"]
  assert 0.01 <= share < 0.5 and record["config"]["augment"]["blend_prob"] == 0.5
  assert any(f"a share of {share:.2f} is blended" in m for m in said)
  assert record["derived"]["augment.flip_unilateral"] is True
  assert record["config"]["augment"]["flip_unilateral"] == "auto"
  assert any(m.startswith("augment.flip_unilateral auto: on") for m in said)
  assert os.listdir(tmp_path / "samples_during_training")
  assert [r["epoch"] for r in records] == [1, 2]
  for r in records:
    assert all(np.isfinite(r[k]) for k in r)
    assert r["aux_real"] > 0 and r["aux_fake"] > 0
    assert 0 <= r["monitor/accuracy"] <= 1 and r["monitor/diversity_min"] >= 0
    # Pairs of the same condition differ by a share of the real spread, well away from 0.
    assert 0.1 < r["pair_spread"] < 20
    assert r["monitor/monitor_seconds"] > 0


def test_monitor_scores_real_images_as_real_and_flags_a_collapse(tmp_path, tiny_config_a):
  config = _small_evaluate(tiny_config_a)
  ds = toy_dataset(6, seed=1)
  g, _ = models.from_config(config.model)
  mon = monitor_lib.Monitor(config, str(tmp_path), ds, g, per_condition=6, log=_quiet)
  # The real slices themselves, in the sample's condition order: as diverse as real.
  real = np.concatenate([ds.slices[(np.asarray(ds.level) == l) & (np.asarray(ds.pattern) == p), 1]
                         for l, p in zip(mon.lv[::6], mon.pt[::6])])
  as_real = mon.score_images(real)
  assert as_real["diversity_min"] > 0.6 and abs(as_real["centroid_offset_px"]) < 1e-6
  # One image per condition, repeated: no diversity, and a warning.
  collapsed = np.repeat(real[::6], 6, axis=0)
  scores = mon.score_images(collapsed)
  assert scores["diversity_min"] < 0.05 and scores["sd_ratio_max"] < 0.05
  assert "collapsing" in mon.warning(scores)
  # A brain moved 2 columns towards the patient's left shows as a positive offset, one
  # moved towards the right as the same negative one (less than 2 px: the toy slices'
  # uniform background noise wraps round and stays centred).
  left = mon.score_images(np.roll(real, 2, axis=2))["centroid_offset_px"]
  right = mon.score_images(np.roll(real, -2, axis=2))["centroid_offset_px"]
  assert 1.0 < left <= 2.0 and right == pytest.approx(-left, abs=0.1)


def test_monitor_samples_the_generator_plainly_even_where_sampling_is_symmetric(tiny_config_a, tmp_path):
  config = _small_evaluate(tiny_config_a)
  config.sample.symmetric_flip = True
  ds = toy_dataset(6, seed=1)
  g, _ = models.from_config(config.model)
  key = jax.random.PRNGKey(0)
  g_vars = g.init({"params": key}, jnp.zeros((1, config.model.z_dim)),
                  jnp.zeros((1, conditions.condition_dim(config.data.levels))),
                  jax.random.split(key, 1), train=False)
  mon = monitor_lib.Monitor(config, str(tmp_path), ds, g, per_condition=6, log=_quiet)
  def draw(generate_fn):
    return sample.generate(g, g_vars, mon.cond, mon.seed, mon.index, mon.z_dim, batch_size=len(mon.index),
                           generate_fn=generate_fn)
  got = draw(mon.generate_fn)
  np.testing.assert_array_equal(got, draw(sample.make_generate_fn(g, mon.z_dim, False)))
  # the sample holds normals that the flip mirrors
  assert not np.array_equal(got, draw(sample.make_generate_fn(g, mon.z_dim, True)))


def test_renormalised_blends_peak_at_one_like_the_evaluated_slices():
  rng = np.random.default_rng(0)
  slices = jnp.asarray(rng.uniform(0, 1, (16, 3, 64, 64)).astype(np.float32) ** 4)
  slices = augment.normalise(slices)
  key = jax.random.PRNGKey(0)
  plain = augment.augment(key, slices, jnp.ones(16, bool), max_shift=0)
  renorm = augment.augment(key, slices, jnp.ones(16, bool), max_shift=0, renormalise=True)
  assert float(plain.max(axis=(1, 2)).min()) < 0.99    # a blend peaks below 1
  np.testing.assert_allclose(np.asarray(renorm.max(axis=(1, 2))), 1.0, rtol=1e-6)
  # The same blend, only rescaled.
  np.testing.assert_allclose(np.asarray(renorm * plain.max(axis=(1, 2), keepdims=True)),
                             np.asarray(plain), rtol=1e-5, atol=1e-7)


def test_blend_prob_keeps_that_share_of_centre_slices_unblended():
  rng = np.random.default_rng(1)
  slices = augment.normalise(jnp.asarray(rng.uniform(0, 1, (400, 3, 64, 64)).astype(np.float32)))
  key = jax.random.PRNGKey(3)
  out = augment.augment(key, slices, jnp.zeros(400, bool), max_shift=0, blend_prob=0.25)
  centre = np.all(np.asarray(out) == np.asarray(slices[:, 1]), axis=(1, 2))
  assert 0.65 < centre.mean() < 0.85          # 75 % expected
  # At the paper's 1.0 the draws are those of the paper's augmentation.
  np.testing.assert_array_equal(np.asarray(augment.augment(key, slices, jnp.zeros(400, bool), blend_prob=1.0)),
                                np.asarray(augment.augment(key, slices, jnp.zeros(400, bool))))


def test_blend_excess_is_the_mean_count_rise_of_random_blends_and_sets_the_share():
  rng = np.random.default_rng(2)
  base = rng.uniform(0.2, 1, (1, 1, 64, 64))
  noisy = augment.normalise(jnp.asarray((base + rng.normal(0, 0.15, (300, 3, 64, 64))).clip(0, None),
                                        jnp.float32))
  excess = augment.blend_excess(np.asarray(noisy))
  # What D sees over random draws of the blend (weights, neighbours) at blend_prob 1.
  view = augment.augment(jax.random.PRNGKey(0), noisy, jnp.zeros(300, bool), max_shift=0, renormalise=True)
  mc = lambda x: np.asarray(x).mean(axis=(1, 2)) / np.asarray(x).max(axis=(1, 2))
  drawn = mc(view).mean() / mc(noisy[:, 1]).mean() - 1
  assert excess > 0.01 and abs(excess - drawn) < 0.1 * excess
  assert augment.blend_share(np.asarray(noisy), excess / 2) == (round(0.5, 2), excess)
  assert augment.blend_share(np.asarray(noisy), 2 * excess)[0] == 1.0
  # Slices equal to their neighbours: a blend changes nothing, every slice may be blended.
  same = np.repeat(np.asarray(noisy[:, 1:2]), 3, axis=1)
  assert abs(augment.blend_excess(same)) < 1e-6 and augment.blend_share(same, 0.02)[0] == 1.0
  # The rule is off (the config as given) where the field is 0, as in the paper's config.
  config = dataset_a.get_config()
  assert augment.with_blend_share(config, np.asarray(noisy)) == (config, {})
  config = dataset_a.get_config("cpu")
  config.augment.blend_mc_excess = excess / 4
  derived_config, derived = augment.with_blend_share(config, np.asarray(noisy), {"a.b": 1})
  assert derived_config.augment.blend_prob == 0.25
  assert derived == {"a.b": 1, "augment.blend_prob": 0.25}
  assert config.augment.blend_prob == 1.0   # the config as given is left as it was
  config.augment.blend = False
  with pytest.raises(ValueError, match=r"augment\.blend_mc_excess.*needs augment\.blend=True"):
    augment.check_config(config.augment)


def test_output_peak_round_trip():
  rng = np.random.default_rng(0)
  x = augment.normalise(jnp.asarray(rng.uniform(0, 1, (3, 64, 64)).astype(np.float32)))
  for peak in (1.0, 0.8):
    m = augment.to_model_range(x, peak)
    assert float(m.min()) >= -1.0 and float(m.max()) == pytest.approx(peak)
    np.testing.assert_allclose(np.asarray(augment.from_model_range(m, peak)), np.asarray(x), atol=1e-6)
  # Below the peak an output is a brightness scale away from the slice: sampling
  # divides it by its own maximum, so every sample peaks at 1 as every real slice does.
  dim = augment.to_model_range(x * 0.7, 0.8)
  np.testing.assert_allclose(np.asarray(augment.from_model_range(dim, 0.8).max(axis=(1, 2))), 1.0, rtol=1e-6)


def test_normalised_output_peaks_where_real_slices_do_and_passes_gradients(tiny_config_a):
  config = tiny_config_a
  config.model.output_peak = 0.8
  z = jax.random.normal(jax.random.PRNGKey(0), (3, config.model.z_dim))
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  y = jnp.asarray(conditions.encode(config.data.levels, ["BG"] * 3, ["normal"] * 3))
  out = {}
  for on in (False, True):
    config.model.normalise_output = on
    g, _ = models.from_config(config.model)
    gv = g.init({"params": jax.random.PRNGKey(2)}, z, y, keys, train=False)
    out[on] = np.asarray(g.apply(gv, z, y, keys, train=False))
  # Each image's hottest pixel sits at the peak, as augment.to_model_range puts every
  # real slice's; the image is the plain one's counts times its own factor.
  np.testing.assert_allclose(out[True].max(axis=(1, 2, 3)), 0.8, rtol=1e-6)
  assert not np.allclose(out[False].max(axis=(1, 2, 3)), 0.8, atol=1e-3)
  ratio = (out[True] + 1) / (out[False] + 1)
  np.testing.assert_allclose(ratio, ratio[:, :1, :1, :1] * np.ones_like(ratio), rtol=1e-4)
  # The same parameters (no new ones), and gradients reach them through the division.
  grads = jax.grad(lambda p: jnp.mean(g.apply({**gv, "params": p}, z, y, keys, train=False)))(gv["params"])
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.isfinite(np.asarray(l)).all() for l in leaves)
  assert max(float(np.abs(np.asarray(l)).max()) for l in leaves) > 0


def test_a_run_from_before_the_fidelity_fields_resumes(tmp_path, tiny_config_a, toy_a):
  import json
  config = tiny_config_a
  config.num_epochs = 1
  train.train(config, str(tmp_path), toy_a, log=_quiet)
  path = tmp_path / "config.json"
  record = json.loads(path.read_text())
  for block, fields in workdir_lib.ADDED_FIELDS.items():
    for name in fields:
      del record["config"][block][name]
  # A run written before loss.condition_aux existed has no such field, even if
  # ADDED_FIELDS forgets it (then the resume below fails).
  record["config"]["loss"].pop("condition_aux", None)
  record["config"]["augment"].pop("flip_unilateral", None)
  path.write_text(json.dumps(record))
  os.remove(tmp_path / "subjects.json")   # nor the record of its subjects
  config.num_epochs = 2
  said = []
  train.train(config, str(tmp_path), toy_a, log=said.append)
  assert any("resuming" in s for s in said)
  assert [r["epoch"] for r in runlog.read(str(tmp_path))] == [1, 2]
  # Its config reads complete, with the values it trained with.
  saved = workdir_lib.read_run_config(str(tmp_path))
  assert saved.model.g_cond == "concat" and saved.model.output_peak == 1.0
  assert saved.loss.mode_seeking == 0.0 and saved.augment.renormalise is False
  assert saved.loss.condition_aux == 0.0 and saved.augment.flip_unilateral is False
  assert (saved.data.holdout_fraction, saved.data.limit_subjects) == (0.0, "")
  assert json.loads((tmp_path / "subjects.json").read_text())["holdout"] == []
  # A recipe field that the older run did not have is still a change, and named.
  config.num_epochs = 3
  config.loss.mode_seeking = 0.5
  with pytest.raises(errors.RunError, match="loss.mode_seeking"):
    train.train(config, str(tmp_path), toy_a, log=_quiet)


def test_sampling_a_recipe_run_with_another_config_says_it_loses_the_flip(tmp_path):
  """select, evaluate and sample take the sample block from --config; a recipe run sampled
  with the paper's config loses its symmetric flip, and the log says so."""
  workdir_lib.write_run_config(str(tmp_path), dataset_a.get_config("cpu"),
                               derived={"augment.flip_unilateral": True})
  said = []
  cfg = modes.run_config(dataset_a.get_config(), str(tmp_path), said.append)
  assert cfg.sample.symmetric_flip is False
  assert len(said) == 1 and "symmetric_flip=True" in said[0] and "--config" in said[0]
  said.clear()
  assert modes.run_config(dataset_a.get_config("cpu+subtle"), str(tmp_path), said.append).sample.symmetric_flip
  assert said == []


def test_condition_balance_draws_rare_conditions_more_often():
  level = np.array(["CER"] * 60 + ["BG"] * 20 + ["COR"] * 4)
  pattern = np.array(["normal"] * 84)
  count = lambda w: [float(w[level == l].sum()) for l in ("CER", "BG", "COR")]
  np.testing.assert_allclose(count(input_pipeline.condition_weights(level, pattern, 0.0)),
                             [60 / 84, 20 / 84, 4 / 84], rtol=1e-5)
  np.testing.assert_allclose(count(input_pipeline.condition_weights(level, pattern, 1.0)), [1 / 3] * 3, rtol=1e-5)
  half = count(input_pipeline.condition_weights(level, pattern, 0.5))   # in proportion to sqrt(n)
  np.testing.assert_allclose(half, np.sqrt([60, 20, 4]) / np.sqrt([60, 20, 4]).sum(), rtol=1e-5)
  # The epoch's draws follow the weights; without weights each slice comes once.
  key = jax.random.PRNGKey(3)
  w = jnp.asarray(input_pipeline.condition_weights(level, pattern, 1.0))
  drawn = np.concatenate([np.asarray(input_pipeline.epoch_order(key, e, 84, 4, w)).ravel() for e in range(40)])
  share = [np.mean(level[drawn] == l) for l in ("CER", "BG", "COR")]
  np.testing.assert_allclose(share, [1 / 3] * 3, atol=0.03)
  once = np.asarray(input_pipeline.epoch_order(key, 0, 84, 4)).ravel()
  assert len(set(once.tolist())) == len(once) == 84
