"""Data parallelism over several devices and several seeds in one program."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from conftest import ROOT, toy_dataset
from spect_fastgan_jax import checkpoints, conditions, models, sample, train
from spect_fastgan_jax import step as step_lib
from spect_fastgan_jax import input_pipeline
from spect_fastgan_jax import train_state

_quiet = lambda msg: None


def _max_diff(a, b):
  """Largest difference of two pytrees, per leaf relative to that leaf's largest value."""
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb)
  out = 0.0
  for x, y in zip(la, lb):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    out = max(out, float(np.max(np.abs(x - y))) / max(float(np.max(np.abs(y))), 1e-12))
  return out


def test_four_devices_train_the_same_run_as_one(tmp_path):
  # Forced host devices must be set before JAX starts, hence a fresh interpreter.
  code = textwrap.dedent(f"""
      import os, sys
      sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]
      import jax, numpy as np, conftest
      from configs import dataset_a
      from spect_fastgan_jax import sharding, train
      assert len(jax.devices()) == 4
      ds = conftest.toy_dataset(1)  # 9 slices: two steps of batch 4
      out = {{}}
      for n in (1, 4):
        cfg = conftest.make_tiny(dataset_a.get_config())
        cfg.num_epochs = 1
        cfg.num_devices = n
        out[n] = train.train(cfg, os.path.join({str(tmp_path)!r}, f"d{{n}}"), ds, log=lambda m: None)
      diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                 for a, b in zip(jax.tree_util.tree_leaves(out[1]), jax.tree_util.tree_leaves(out[4])))
      print("MAXDIFF", diff)
      for bad, field in ((8, "only 4 device"), (3, "split evenly")):
        cfg.num_devices = bad
        try:
          sharding.make_mesh(cfg.num_devices, cfg.batch_size)
        except ValueError as e:
          assert field in str(e) and "num_devices" in str(e), e
        else:
          raise AssertionError(bad)
      print("OK")
  """)
  env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip(),
             JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  diff = float(r.stdout.split("MAXDIFF")[1].split()[0])
  # The same arithmetic, summed in another order across devices: float32 rounding only.
  assert diff < 1e-4
  assert "OK" in r.stdout


def test_seeds_trained_together_equal_seeds_trained_alone(tmp_path, tiny_config_a):
  config = tiny_config_a
  config.num_epochs = 1
  config.num_seeds = 2
  ds = toy_dataset(1)  # 9 slices, 2 steps: the seed axis makes CPU convolutions grouped and slow
  together = train.train(config, str(tmp_path / "ens"), ds, log=_quiet)
  assert jax.tree_util.tree_leaves(together.g_params)[0].shape[0] == 2
  for seed in (0, 1):
    workdir = tmp_path / "ens" / f"seed_{seed}"
    saved = json.load(open(workdir / "config.json"))["config"]
    assert saved["seed"] == seed and saved["num_seeds"] == 1
    assert checkpoints.sampler_epochs(str(workdir)) == [1]
  # The second seed, trained alone, is the second member of the ensemble, up to
  # float32 rounding: the seed axis batches the convolutions, which then sum in
  # another order. The scalar noise scales, whose gradient is a sum of many
  # cancelling terms, show it most (about 1% after two steps); images agree closely.
  config.num_seeds = 1
  config.seed = 1
  alone = train.train(config, str(tmp_path / "alone1"), ds, log=_quiet)
  member = jax.tree_util.tree_map(lambda x: x[1], together)
  assert _max_diff(member.g_params, alone.g_params) < 2e-2
  assert _max_diff(member.d_params, alone.d_params) < 2e-2
  g, _ = models.from_config(config.model)
  cond = conditions.encode(config.data.levels, ["BG"] * 4, ["normal", "unilateral", "bilateral", "normal"])
  imgs = [sample.generate(g, {"params": s.g_params, "batch_stats": s.g_stats}, cond, 0,
                          np.arange(4, dtype=np.int32), config.model.z_dim) for s in (member, alone)]
  assert np.max(np.abs(imgs[0] - imgs[1])) < 1e-3
  # Different seeds give different generators.
  assert _max_diff(jax.tree_util.tree_map(lambda x: x[0], together.g_params),
                   jax.tree_util.tree_map(lambda x: x[1], together.g_params)) > 0.1


def test_bad_scale_fields_are_named(tiny_config_a):
  tiny_config_a.num_seeds = 0
  with pytest.raises(ValueError, match="num_seeds"):
    train.check_config(tiny_config_a)
  tiny_config_a.num_seeds = 1
  tiny_config_a.num_devices = 0
  with pytest.raises(ValueError, match="num_devices"):
    train.check_config(tiny_config_a)


def test_bfloat16_compute_trains_with_float32_weights(tiny_config_a, toy_a):
  import jax.numpy as jnp
  config = tiny_config_a
  config.model.dtype = "bfloat16"
  g, d = models.from_config(config.model)
  state = train_state.create_train_state(config, g, d)
  data = input_pipeline.device_data(toy_a, config.data.levels)
  step = jax.jit(step_lib.make_train_step(config, g, d))
  idx = jnp.arange(config.batch_size)
  history = []
  for i in range(4):  # bfloat16 convolutions are emulated on CPU, hence slow: few steps
    state, m = step(state, input_pipeline.gather(data, idx),
                    jax.random.PRNGKey(i))
    history.append({k: float(v) for k, v in m.items()})
  assert all(np.isfinite(v) for h in history for v in h.values())
  assert {x.dtype for x in jax.tree_util.tree_leaves(state.g_params)} == {jnp.dtype("float32")}
  assert history[-1]["recon"] < history[0]["recon"]
  out = g.apply({"params": state.g_params, "batch_stats": state.g_stats},
                jnp.zeros((2, config.model.z_dim)), data.cond[:2], jax.random.split(jax.random.PRNGKey(0), 2),
                train=False)
  assert out.dtype == jnp.float32
