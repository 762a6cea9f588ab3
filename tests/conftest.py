"""Shared fixtures: tiny configs and data sets that keep the suite fast on 2 CPU cores."""

import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite's programs are tiny and run a few steps, so XLA's CPU backend optimisation
# costs more than it saves: without it a tiny training run (compile + one epoch) takes
# 49 s instead of 116 s on a 2 GHz core. Set before JAX starts, so launch.py
# subprocesses (which get this environment) compile the same way and in-process and
# subprocess results still agree bit for bit.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if _FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Identical programs compiled by different tests (and by launch.py subprocesses,
# which get the same folder through the environment) are compiled once.
CACHE_DIR = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax-tests"))
jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

from configs import dataset_a, dataset_b  # noqa: E402
from spect_fastgan_jax.data.dataset import SliceDataset  # noqa: E402


def make_tiny(config):
  """Shrinks a config to widths that compile and run in seconds on a CPU."""
  config.model.g_channels = (16, 8, 8, 8, 8)
  config.model.d_channels = (8, 8, 8, 8)
  config.model.d_out_channels = 8
  config.model.dec_channels = (8, 8, 8)
  config.model.z_dim = 8
  config.model.embed_dim = 8
  config.num_epochs = 2
  config.log.sample_every_epochs = 0
  config.log.monitor_every_epochs = 0
  config.log.progress = False
  config.log.tensorboard = False
  return config


def save_random_sampler_checkpoints(workdir, config, epochs=(1, 2)):
  """Sampler checkpoints of `epochs` as training writes them, the weights random
  initialisations of G (one per epoch): what sampling reads, without a training compile."""
  from spect_fastgan_jax import checkpoints, conditions, models
  g, _ = models.from_config(config.model)
  c = conditions.condition_dim(config.data.levels, conditions.side_conditioned(config.data))
  ckpt = checkpoints.RunCheckpoints(workdir)
  for epoch in epochs:
    key = jax.random.PRNGKey(epoch)
    g_vars = g.init({"params": key}, jax.numpy.zeros((1, config.model.z_dim)), jax.numpy.zeros((1, c)),
                    jax.random.split(key, 1), train=False)
    ckpt.save(epoch, None, g_vars)
  ckpt.close()


@pytest.fixture
def tiny_config_a():
  return make_tiny(dataset_a.get_config())


@pytest.fixture
def tiny_config_b():
  return make_tiny(dataset_b.get_config())


def toy_dataset(n_per_condition: int = 2, seed: int = 0, levels=("CER", "BG", "COR")) -> SliceDataset:
  """A small data set with every (level, pattern): a bright disc whose size depends on the
  level, a darker right half for unilateral (patient-left = high columns kept bright)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:64, :64]
  slices, lv, pt, sd, sj = [], [], [], [], []
  for li, level in enumerate(levels):
    for pattern in ("normal", "unilateral", "bilateral"):
      for k in range(n_per_condition):
        r = 14 + 5 * li
        img = (np.hypot(yy - 32, xx - 32) < r).astype(np.float32) * 100 + 5
        if pattern == "unilateral":
          img[:, :32] *= 0.6
        if pattern == "bilateral":
          img *= 0.8
        three = np.stack([img * 0.9, img, img * 0.95]) + rng.uniform(0, 5, (3, 64, 64))
        slices.append(three.astype(np.float32))
        lv.append(level)
        pt.append(pattern)
        sd.append("right" if pattern == "unilateral" else "none")
        sj.append(f"s{len(sj)}")
  return SliceDataset(slices=np.stack(slices), level=lv, pattern=pt, side=sd, subject=sj).validate("toy")


@pytest.fixture
def toy_a():
  return toy_dataset()
