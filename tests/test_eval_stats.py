"""The paper's statistics against scipy directly, on fixed samples."""

import numpy as np
import pytest
from scipy import stats as sp

from spect_fastgan_jax.evaluation import stats

REAL = np.array([0.41, 0.44, 0.39, 0.47, 0.42, 0.45, 0.40, 0.43])
RUN_A = np.array([0.42, 0.46, 0.40, 0.44, 0.43, 0.41, 0.45])
RUN_B = np.array([0.48, 0.51, 0.47, 0.52, 0.50, 0.49])


def test_anova_and_post_hoc_match_scipy():
  r = stats.compare({"real": REAL, "A": RUN_A, "B": RUN_B})
  ref = sp.f_oneway(REAL, RUN_A, RUN_B)
  assert r["anova_f"] == pytest.approx(ref.statistic, rel=1e-12)
  assert r["anova_p"] == pytest.approx(ref.pvalue, rel=1e-12)
  dun = sp.dunnett(RUN_A, RUN_B, control=REAL, rng=stats.DUNNETT_SEED)
  assert r["dunnett_p"]["A"] == pytest.approx(dun.pvalue[0], rel=1e-12)
  assert r["dunnett_p"]["B"] == pytest.approx(dun.pvalue[1], rel=1e-12)
  tuk = sp.tukey_hsd(REAL, RUN_A, RUN_B)
  assert r["tukey_p"]["real vs A"] == pytest.approx(tuk.pvalue[0, 1], rel=1e-9)
  assert r["tukey_p"]["A vs B"] == pytest.approx(tuk.pvalue[1, 2], rel=1e-9)
  # The run that differs is found, the one that does not is not.
  assert r["dunnett_p"]["B"] < 1e-4 < 0.05 < r["dunnett_p"]["A"]


@pytest.mark.parametrize("run", [RUN_A, RUN_B])
def test_two_groups_reduce_to_the_t_test(run):
  r = stats.compare({"real": REAL, "run": run})
  t = sp.ttest_ind(REAL, run).pvalue
  assert r["anova_p"] == pytest.approx(t, rel=1e-9)
  assert r["tukey_p"]["real vs run"] == pytest.approx(t, rel=1e-6)
  # Dunnett's P is integrated numerically by scipy: equal up to its error.
  assert r["dunnett_p"]["run"] == pytest.approx(t, rel=1e-2, abs=5e-5)


def test_means_sds_and_counts():
  r = stats.compare({"real": REAL, "A": RUN_A})
  assert r["mean"]["A"] == pytest.approx(RUN_A.mean())
  assert r["sd"]["real"] == pytest.approx(REAL.std(ddof=1))
  assert r["n"] == {"real": 8, "A": 7}


def test_undefined_tests_give_nan_not_errors():
  r = stats.compare({"real": np.ones(5), "A": np.ones(5)})
  assert np.isnan(r["anova_p"]) and r["dunnett_p"] == {}
  r = stats.compare({"real": REAL, "A": np.array([0.4])})
  assert np.isnan(r["anova_p"])


def test_control_must_be_a_group():
  with pytest.raises(ValueError, match="control"):
    stats.compare({"A": REAL, "B": RUN_A})


@pytest.mark.parametrize("p, mark", [(0.2, "ns"), (0.05, "ns"), (0.049, "*"), (0.009, "**"),
                                     (0.0009, "***"), (0.00009, "****"), (float("nan"), "n/a")])
def test_stars_as_in_the_paper(p, mark):
  assert stats.stars(p) == mark


def test_cohens_d_of_a_one_sd_shift():
  a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
  assert stats.cohens_d(a, a + a.std(ddof=1)) == pytest.approx(1.0)
