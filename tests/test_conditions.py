import numpy as np
import pytest

from spect_fastgan_jax import conditions


def test_dataset_a_encoding_matches_paper_table_2():
  levels = ("CER", "BG", "COR")
  got = conditions.encode(levels, ["BG", "CER", "COR"], ["unilateral", "normal", "bilateral"])
  np.testing.assert_array_equal(got, [[0, 1, 0, 0, 1, 0], [1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 1]])
  assert conditions.condition_dim(levels) == 6


def test_dataset_b_encoding_is_pattern_only():
  got = conditions.encode(("COR",), ["COR", "COR", "COR"], ["normal", "unilateral", "bilateral"])
  np.testing.assert_array_equal(got, np.eye(3))
  assert conditions.condition_dim(("COR",)) == 3


def test_unknown_labels_are_named():
  with pytest.raises(ValueError, match="'XYZ'"):
    conditions.encode(("CER", "BG", "COR"), ["XYZ"], ["normal"])
  with pytest.raises(ValueError, match="'stroke'"):
    conditions.encode(("COR",), ["COR"], ["stroke"])
  with pytest.raises(ValueError, match="CER"):
    conditions.encode(("COR",), ["CER"], ["normal"])


def test_bad_levels_field_is_named():
  with pytest.raises(ValueError, match="data.levels"):
    conditions.check_levels(())
  with pytest.raises(ValueError, match="data.levels"):
    conditions.check_levels(("COR", "NECK"))


def test_table1_totals():
  c = conditions.TABLE1_COUNTS
  assert sum(c.values()) == 938
  assert sum(v for (l, p), v in c.items() if p == "normal") == 551
  assert sum(v for (l, p), v in c.items() if p == "unilateral") == 291
  assert sum(v for (l, p), v in c.items() if p == "bilateral") == 96
