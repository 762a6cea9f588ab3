"""What the benchmark scripts share: the repository on sys.path, config loading, a fresh model."""

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def load_config(path: str):
  """The ConfigDict of a config file (configs/*.py), with a variant after ':'
  (configs/dataset_a.py:cpu), as launch.py would load it."""
  path, _, variant = path.partition(":")
  spec = importlib.util.spec_from_file_location("benchmark_config", os.path.join(ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def model_and_state(config):
  """(generator, discriminator, fresh TrainState) of a config, as training builds them."""
  from spect_fastgan_jax import train, train_state
  g, d = train.networks(config)
  return g, d, train_state.create_train_state(config, g, d)


def step_inputs(config, key):
  """A real batch [B, 3, 64, 64], its conditions [B, C], flip flags [B] and the
  conditions' real pair spreads [B], for timing a step."""
  import jax
  import jax.numpy as jnp
  from spect_fastgan_jax import conditions
  b = config.batch_size
  y = jnp.zeros((b, conditions.condition_dim(config.data.levels))).at[:, 0].set(1)
  return jax.random.uniform(key, (b, 3, 64, 64)), y, jnp.ones(b, bool), jnp.full(b, 0.2)


def embedded_set_and_features():
  """(the embedded default set, all levels; its condition classifier's feature function
  images [N, 64, 64] -> [N, F]). The classifier is trained once into .cache/benchmarks.
  Also read by experiments/fidelity/memorisation_smoothing.py."""
  from configs import data as data_config
  from spect_fastgan_jax import data
  from configs import evaluate as eval_config
  from spect_fastgan_jax.evaluation import classifier
  ds = data.load_training_set(data_config.get_config(), log=lambda m: None)
  clf = classifier.reference(ds, eval_config.get_config().classifier, os.path.join(ROOT, ".cache", "benchmarks"))
  return ds, lambda x: clf.trained.predict(x)["features"]


def time_epochs(epoch_fn, state, data, repeats: int):
  """Runs `epoch_fn(state, data)` once to compile and warm up, then `repeats` times.
  Returns (the last state, seconds of the first call, [seconds of each timed call])."""
  import time
  import jax
  t = time.perf_counter()
  state, m = epoch_fn(state, data)
  jax.block_until_ready(m)
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    state, m = epoch_fn(state, data)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  return state, first, times
