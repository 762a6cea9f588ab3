"""The condition classifier: subject-wise split, learning simulated conditions, the cache."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spect_fastgan_jax.data import simulate
from configs import evaluate as config
from spect_fastgan_jax.evaluation import classifier
from test_data_simulate import small_sim
from conftest import toy_dataset


def _tiny_cfg(steps):
  cfg = config.get_config().classifier
  cfg.widths, cfg.features, cfg.steps = (8, 16, 16), 32, steps
  return cfg


@pytest.fixture(scope="module")
def simulated():
  """Normal and unilateral slices at two levels of the simulated set."""
  sim = small_sim({"BG_normal": 24, "BG_unilateral": 24, "COR_normal": 24, "COR_unilateral": 24})
  return simulate.simulate(sim, log=lambda s: None)


def test_split_never_puts_a_subject_on_both_sides(simulated):
  held = classifier.subject_split(simulated, 0.25, seed=0)
  assert not set(simulated.subject[held]) & set(simulated.subject[~held])
  assert 0.15 < held.mean() < 0.35
  for pattern in ("normal", "unilateral"):
    assert held[simulated.pattern == pattern].any() and (~held)[simulated.pattern == pattern].any()


def test_split_rejects_a_bad_fraction(simulated):
  with pytest.raises(ValueError, match="holdout_fraction"):
    classifier.subject_split(simulated, 1.0, seed=0)


def test_learns_simulated_conditions_well_above_chance(simulated):
  held = classifier.subject_split(simulated, 0.25, seed=0)
  trained = classifier.train(classifier.real_labelled(simulated.subset(~held)), _tiny_cfg(200))
  test = simulated.subset(held)
  acc = classifier.accuracy(trained, test.slices[:, 1], test.level, test.pattern, test.side, ("BG", "COR"))
  # Chance: 1/4 for (level, pattern), 1/2 for the side.
  assert acc["overall"] >= 0.6
  assert acc["level"] >= 0.9
  assert acc["side"] >= 0.75


def test_classifier_is_cached_per_data_set(tmp_path):
  ds = toy_dataset(2)
  cfg = _tiny_cfg(5)
  logs = []
  first = classifier.reference(ds, cfg, str(tmp_path), logs.append)
  again = classifier.reference(ds, cfg, str(tmp_path), logs.append)
  assert any("training" in m for m in logs) and any("loaded" in m for m in logs)
  assert first.key == again.key and len(list(tmp_path.iterdir())) == 1
  x = ds.slices[:4, 1]
  np.testing.assert_allclose(first.trained.predict(x)["features"], again.trained.predict(x)["features"],
                             rtol=1e-6)
  # Other data, other key: a new classifier, the old one is not reused.
  other = classifier.reference(toy_dataset(2, seed=1), cfg, str(tmp_path), logs.append)
  assert other.key != first.key and len(list(tmp_path.iterdir())) == 2


def test_learning_rate_sets_the_step_size():
  data = classifier.real_labelled(toy_dataset(2))
  start = classifier.ConditionClassifier((8, 16, 16), 32).init(
      jax.random.PRNGKey(int(_tiny_cfg(1).seed)), jnp.zeros((1, 64, 64)))["params"]
  moved = {}
  for lr in (0.0, 1e-4, 1e-2):
    cfg = _tiny_cfg(5)
    cfg.learning_rate = lr
    params = classifier.train(data, cfg).params
    moved[lr] = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                    zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(start)))
  # Adam moves each weight by about the learning rate a step: not at all at 0.
  assert moved[0.0] == 0.0
  assert 1e-4 < moved[1e-4] <= 5 * 1e-4 * 1.01
  assert 1e-2 < moved[1e-2] <= 5 * 1e-2 * 1.01
