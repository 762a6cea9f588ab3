"""--mode=select's rule (evaluation/select.py `choose`, docs/evaluation.md) on hand-made
score tables: each row below is written so that exactly one part of the rule decides."""

import math

import pytest

from spect_fastgan_jax.errors import ConfigError
from spect_fastgan_jax.evaluation.select import choose, epochs_to_score


def _row(epoch, accuracy, frechet, diversity):
  return {"epoch": epoch, "accuracy": accuracy, "frechet_mean": frechet, "diversity_ratio": diversity}


def test_lowest_frechet_among_the_eligible_wins():
  rows = [_row(10, 0.90, 30.0, 1.0), _row(20, 0.91, 20.0, 1.0), _row(30, 0.92, 25.0, 1.0)]
  assert choose(rows, accuracy_margin=0.05, min_diversity=0.8)[0] == 20


def test_an_epoch_below_the_accuracy_margin_is_not_eligible():
  # Epoch 20 has the lowest Frechet distance but is 0.06 under the best accuracy.
  rows = [_row(10, 0.90, 30.0, 1.0), _row(20, 0.86, 10.0, 1.0), _row(30, 0.92, 25.0, 1.0)]
  assert choose(rows, accuracy_margin=0.05, min_diversity=0.8)[0] == 30
  # A wider margin lets it in, and then it wins.
  assert choose(rows, accuracy_margin=0.07, min_diversity=0.8)[0] == 20


def test_a_collapsed_epoch_is_not_eligible_on_diversity():
  rows = [_row(10, 0.92, 10.0, 0.5), _row(20, 0.92, 15.0, 0.85), _row(30, 0.92, 12.0, 0.79)]
  best, reason = choose(rows, accuracy_margin=0.05, min_diversity=0.8)
  assert best == 20
  assert "diversity ratio >= 0.8" in reason and "rule applied without it" not in reason


def test_without_a_diverse_epoch_the_rule_drops_diversity_and_says_so():
  rows = [_row(10, 0.92, 10.0, 0.5), _row(20, 0.80, 5.0, 0.6), _row(30, 0.91, 12.0, 0.7)]
  best, reason = choose(rows, accuracy_margin=0.05, min_diversity=0.8)
  assert best == 10   # epoch 20 stays out on accuracy
  assert "no epoch reached diversity ratio 0.8" in reason


def test_ties_go_to_the_earlier_epoch():
  rows = [_row(30, 0.92, 12.0, 1.0), _row(10, 0.92, 12.0, 1.0), _row(20, 0.92, 12.0, 1.0)]
  assert choose(rows, accuracy_margin=0.05, min_diversity=0.8)[0] == 10


def test_epochs_without_a_finite_frechet_distance_are_ignored():
  rows = [_row(10, 0.99, math.nan, 1.0), _row(20, 0.90, 15.0, 1.0)]
  # The NaN epoch's accuracy does not set the accuracy bar either.
  assert choose(rows, accuracy_margin=0.05, min_diversity=0.8)[0] == 20
  best, reason = choose([_row(10, 0.9, math.inf, 1.0)], 0.05, 0.8)
  assert best is None and "no epoch has a finite Frechet distance" in reason


def test_the_epochs_scored_are_every_kth_and_the_last():
  assert epochs_to_score([5, 10, 15, 20, 23], every=10) == [10, 20, 23]
  assert epochs_to_score([10, 20], every=10) == [10, 20]
  assert epochs_to_score([1, 2, 3], every=1) == [1, 2, 3]
  with pytest.raises(ConfigError, match="--select_every must be >= 1"):
    epochs_to_score([10], every=0)
