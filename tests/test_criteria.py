"""The fidelity criteria judged from a hand-made evaluation result."""

import pytest

from spect_fastgan_jax.evaluation import criteria


def _result(div=(0.9, 0.79), acc=0.86, real_acc=0.9, sd=(1.0, 1.25), mc=(0.2, 0.01), lr=(0.5, 0.06),
            side=0.04, c_t=(-1.0, -2.5), asked=(0.9, 0.8), real_side=0.86):
  """A report.json as evaluate writes it, for one run 'A' and two conditions."""
  keys = ("BG/normal", "BG/unilateral")
  return {
      "runs": [{"label": "A", "epoch": 7}],
      "classifier": {"holdout_accuracy": {"overall": real_acc, "side": real_side}},
      "runs_scores": {"A": {
          "per_condition": {k: {"diversity_ratio": d} for k, d in zip(keys, div)},
          "accuracy": {"overall": acc},
          "side_balance": {"all": {"binomial_p": side}},
          # A side-conditioned run: the share of unilateral defects read on the side asked.
          "side_correctness": {"n": 20, "left": asked[0], "right": asked[1],
                               "share": sum(asked) / 2}}},
      "paper": {"pixelwise_sd": {**{k: {"real": 0.1, "A": 0.1 * r} for k, r in zip(keys, sd)},
                                 "BG": {"real": 0.1, "A": 0.5}},   # a level row: not a condition
                "per_pattern": {p: {"mc": {"anova_p": m}, "lr": {"anova_p": l}}
                                for p, m, l in zip(("normal", "unilateral"), mc, lr)}},
      "memorisation": {"A": {"c_t": dict(zip(("pixel", "feature"), c_t))}},
  }


def test_each_criterion_at_its_threshold():
  rows = {r["name"]: r for r in criteria.fidelity_criteria(_result())}
  assert list(rows) == list(criteria.NAMES)
  assert rows["diversity"]["failing"] == ["BG/unilateral"] and rows["diversity"]["summary"] == "1 of 2"
  assert rows["accuracy"]["met"] is True          # 0.86 >= 0.95 x 0.9 = 0.855
  assert rows["sd"]["failing"] == ["BG/unilateral"] and list(rows["sd"]["values"]) == ["BG/normal", "BG/unilateral"]
  assert rows["mc"]["failing"] == ["unilateral"]
  assert rows["lr"]["met"] is True
  assert rows["side"]["met"] is False and rows["side"]["summary"] == "no"
  assert rows["memorisation"]["failing"] == ["feature"]
  assert "misses feature" in criteria.describe(rows["memorisation"])
  # Each side against the held-out real 0.86: left 0.9 passes, right 0.8 misses.
  assert rows["side_asked"]["met"] is False and rows["side_asked"]["failing"] == ["right"]
  assert rows["side_asked"]["values"] == {"left": 0.9, "right": 0.8}


def test_all_met_and_just_missed():
  good = _result(div=(0.8, 1.3), acc=0.855, sd=(0.8, 1.2), mc=(0.06, 0.5), lr=(0.2, 0.3), side=0.5,
                 c_t=(-1.9, 0.3), asked=(0.9, 0.86))
  assert all(r["met"] for r in criteria.fidelity_criteria(good))
  short = {r["name"]: r["met"] for r in criteria.fidelity_criteria(_result(acc=0.854))}
  assert short["accuracy"] is False


def test_a_set_mirrored_on_a_coin_is_judged_by_the_generators_own_side_share():
  r = _result(side=0.5)
  # Sampling mirrored unilateral images (augment.flip_unilateral): the set is even by the
  # coin, but the generator's own defects, flipped back, lean to one side.
  r["runs_scores"]["A"]["side_balance"]["all"].update(generator_binomial_p_by_lr=0.014, mirrored_share=0.5)
  side = {x["name"]: x for x in criteria.fidelity_criteria(r)}["side"]
  assert side["met"] is False and side["values"] == {"all": 0.014} and "generator's own" in side["rule"]
  # The reverse: a set that is uneven by chance of the coin, a generator that is even.
  r = _result(side=0.04)
  r["runs_scores"]["A"]["side_balance"]["all"]["generator_binomial_p_by_lr"] = 0.82
  assert {x["name"]: x["met"] for x in criteria.fidelity_criteria(r)}["side"] is True


@pytest.mark.parametrize("missing", ["side", "memorisation", "side_asked"])
def test_criteria_the_report_did_not_measure_are_left_out(missing):
  r = _result()
  if missing == "side":
    r["runs_scores"]["A"]["side_balance"] = {}
  elif missing == "side_asked":      # a run that is not side-conditioned
    r["runs_scores"]["A"]["side_correctness"] = None
  else:
    del r["memorisation"]
  assert missing not in [c["name"] for c in criteria.fidelity_criteria(r)]
