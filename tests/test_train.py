import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import toy_dataset
from spect_fastgan_jax import checkpoints, models, runlog, train
from spect_fastgan_jax import step as step_lib
from spect_fastgan_jax import errors
from spect_fastgan_jax import input_pipeline
from spect_fastgan_jax import train_state

_quiet = lambda msg: None


def _setup(config, ds):
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  data = input_pipeline.device_data(ds, config.data.levels)
  step = jax.jit(step_lib.make_train_step(config, g, d))
  batch = input_pipeline.gather(data, jnp.arange(config.batch_size))
  return state, step, batch


def _d_total(m):
  return float(m["d_real"] + m["d_fake"] + m["recon"])


def test_one_step_moves_each_network_downhill_on_its_own_loss(tiny_config_a, toy_a):
  state, step, batch = _setup(tiny_config_a, toy_a)
  key = jax.random.PRNGKey(7)
  for _ in range(3):  # a few steps in, away from the initial transient
    state, _ = step(state, batch, key)
  new, before = step(state, batch, key)
  # Metrics are the losses at the step's input parameters: swap one network at a time.
  _, g_moved = step(state.replace(g_params=new.g_params, g_stats=new.g_stats), batch, key)
  _, d_moved = step(state.replace(d_params=new.d_params, d_stats=new.d_stats), batch, key)
  assert float(g_moved["g"]) < float(before["g"])
  assert _d_total(d_moved) < _d_total(before)


def test_both_adam_states_change_in_one_step(tiny_config_a, toy_a):
  state, step, batch = _setup(tiny_config_a, toy_a)
  new, _ = step(state, batch, jax.random.PRNGKey(0))
  for name in ("g_opt", "d_opt", "g_params", "d_params"):
    old_leaves = jax.tree_util.tree_leaves(getattr(state, name))
    new_leaves = jax.tree_util.tree_leaves(getattr(new, name))
    changed = [not np.array_equal(a, b) for a, b in zip(old_leaves, new_leaves)]
    assert sum(changed) > len(changed) // 2, name
  assert int(new.step) == 1


def test_training_on_a_fixed_set_lowers_the_losses_and_stays_finite(tiny_config_a, toy_a):
  state, step, batch = _setup(tiny_config_a, toy_a)
  history = []
  for i in range(40):
    state, m = step(state, batch, jax.random.PRNGKey(i))
    history.append({k: float(v) for k, v in m.items()})
  assert all(np.isfinite(v) for h in history for v in h.values())
  first, last = history[:5], history[-5:]
  assert np.mean([_d_total(h) for h in last]) < 0.7 * np.mean([_d_total(h) for h in first])
  assert np.mean([h["recon"] for h in last]) < 0.7 * np.mean([h["recon"] for h in first])


def _trees_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb))


def test_checkpoints_round_trip_and_cover_every_epoch(tmp_path, tiny_config_a, toy_a):
  config = tiny_config_a
  final = train.train(config, str(tmp_path), toy_a, log=_quiet)
  assert checkpoints.sampler_epochs(str(tmp_path)) == [1, 2]
  ck = checkpoints.RunCheckpoints(str(tmp_path), 3)
  g, d = models.from_config(config.model)
  restored = ck.restore_train(2, train_state.create_train_state(config, g, d))
  ck.close()
  assert _trees_equal(restored, final)
  like = {"params": final.g_params, "batch_stats": final.g_stats}
  sampler = checkpoints.restore_sampler(str(tmp_path), 2, like)
  assert _trees_equal(sampler, like)
  records = runlog.read(str(tmp_path))
  assert [r["epoch"] for r in records] == [1, 2]
  assert set(train.METRICS) <= set(records[0])
  saved = json.load(open(tmp_path / "config.json"))
  assert saved["config"]["batch_size"] == 4 and "git_commit" in saved["provenance"]
  # Running the finished run again does nothing and says so.
  said = []
  again = train.train(config, str(tmp_path), toy_a, log=said.append)
  assert any("finished" in s for s in said)
  assert _trees_equal(again, final)


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, tiny_config_a, toy_a):
  config = tiny_config_a
  config.num_epochs = 3
  whole = train.train(config, str(tmp_path / "whole"), toy_a, log=_quiet)
  config.num_epochs = 1
  train.train(config, str(tmp_path / "split"), toy_a, log=_quiet)
  config.num_epochs = 3
  said = []
  resumed = train.train(config, str(tmp_path / "split"), toy_a, log=said.append)
  assert any("resuming" in s and "epoch 1" in s for s in said)
  record = json.load(open(tmp_path / "split" / "config.json"))
  assert len(record["earlier_provenance"]) == 1 and "git_commit" in record["earlier_provenance"][0]
  assert int(resumed.step) == int(whole.step)
  assert _trees_equal(resumed, whole)  # bit-exact on the same platform


def test_resuming_with_a_changed_model_field_is_refused(tmp_path, tiny_config_a, toy_a):
  config = tiny_config_a
  config.num_epochs = 1
  train.train(config, str(tmp_path), toy_a, log=_quiet)
  config.num_epochs = 2
  config.optim.lr_g = 1e-3
  with pytest.raises(errors.RunError, match="optim.lr_g"):
    train.train(config, str(tmp_path), toy_a, log=_quiet)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, tiny_config_a, toy_a):
  config = tiny_config_a
  config.num_epochs = 3
  config.optim.lr_d = 1e30
  config.optim.lr_g = 1e30
  with pytest.raises(errors.RunError, match="non-finite loss in epoch") as err:
    train.train(config, str(tmp_path), toy_a, log=_quiet)
  last_good = int(str(err.value).split("last good checkpoint is epoch ")[1].split(";")[0])
  assert checkpoints.sampler_epochs(str(tmp_path)) == list(range(1, last_good + 1))
  records = runlog.read(str(tmp_path))
  assert [r["epoch"] for r in records] == list(range(1, last_good + 1))
  assert all(np.isfinite(v) for r in records for v in r.values())


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("num_epochs", 0), ("optim.lr_g", -1.0),
                                          ("batch_size", True), ("model.d_out_channels", 0),
                                          ("augment.max_shift", 40), ("loss.recon_distance", "huber"),
                                          ("optim.ema_decay", 1.5)])
def test_bad_config_values_are_named(tiny_config_a, field, value):
  config = tiny_config_a
  node = config
  *parents, leaf = field.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    train.check_config(config)


def test_batch_larger_than_the_data_set_is_refused(tmp_path, tiny_config_a, toy_a):
  config = tiny_config_a
  config.batch_size = 64
  with pytest.raises(ValueError, match="batch_size"):
    train.train(config, str(tmp_path), toy_a, log=_quiet)


def test_ema_generator_gets_statistics_that_fit_its_weights(tiny_config_a, toy_a):
  config = tiny_config_a
  config.optim.ema_decay = 0.9
  g, d = models.from_config(config.model)
  state, step, batch = _setup(config, toy_a)
  for i in range(5):
    state, _ = step(state, batch, jax.random.PRNGKey(i))
  sampler = train_state.sampler_variables(state, config, g, batch.cond)
  assert _trees_equal(sampler["params"], state.ema_params)
  assert not _trees_equal(sampler["params"], state.g_params)
  flat_new = jax.tree_util.tree_leaves_with_path(sampler["batch_stats"])
  flat_old = dict(jax.tree_util.tree_leaves_with_path(state.g_stats))
  changed_means = [not np.array_equal(v, flat_old[p]) for p, v in flat_new if "mean" in jax.tree_util.keystr(p)]
  kept_u = [np.array_equal(v, flat_old[p]) for p, v in flat_new if jax.tree_util.keystr(p).endswith("['u']")]
  assert changed_means and all(changed_means)
  assert kept_u and all(kept_u)


def test_scan_and_step_loops_train_the_same_run(tiny_config_a):
  config = tiny_config_a
  toy = toy_dataset(1)  # two steps: XLA:CPU runs the scan's loop body slowly
  g, d = models.from_config(config.model)
  data = input_pipeline.device_data(toy, config.data.levels)
  out = {}
  for loop in ("scan", "steps"):
    epoch = train.make_train_epoch(config, g, d, len(toy), train_loop=loop)
    state, metrics = epoch(train_state.create_train_state(config, g, d), data)
    out[loop] = (state, metrics)
  assert int(out["scan"][0].epoch) == int(out["steps"][0].epoch) == 1
  assert int(out["scan"][0].step) == int(out["steps"][0].step) == len(toy) // config.batch_size
  for a, b in zip(jax.tree_util.tree_leaves(out["scan"]), jax.tree_util.tree_leaves(out["steps"])):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-5)


def test_a_partial_last_log_line_from_a_kill_is_dropped(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"epoch": 1, "g": 0.5}\n{"epoch": 2, "g"')
  assert runlog.read(str(tmp_path)) == [{"epoch": 1, "g": 0.5}]


@pytest.mark.parametrize("warmup, share", [(True, 0.9), (False, 0.001)])
def test_ema_takes_the_share_of_the_new_weights_its_warmup_says(tiny_config_a, warmup, share):
  """optim.ema_warmup: at step 0 the EMA decay is min(ema_decay, 1/10) with the warm-up,
  ema_decay without, so the EMA moves 0.9 or 0.001 of the way to G's new weights."""
  config = tiny_config_a
  config.optim.ema_decay, config.optim.ema_warmup = 0.999, warmup
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  ones = lambda tree: jax.tree_util.tree_map(jnp.ones_like, tree)
  new = step_lib.apply_updates(state, train_state.make_optimizers(config), ones(state.g_params),
                               ones(state.d_params), state.g_stats, state.d_stats, config.optim)
  e0, e1, p0, p1 = (np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)]).astype(np.float64)
                    for t in (state.ema_params, new.ema_params, state.g_params, new.g_params))
  np.testing.assert_array_equal(e0, p0)   # the EMA starts at G's weights
  # The EMA's move against G's (least squares over all weights: a 0.001 share of a
  # 1e-4 move is near float32's resolution for a single weight).
  moved = float(np.dot(e1 - e0, p1 - p0) / np.dot(p1 - p0, p1 - p0))
  assert moved == pytest.approx(share, rel=0.05)
