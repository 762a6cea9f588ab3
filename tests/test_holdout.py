"""Subject-held-out training (config field data.holdout_fraction): the GAN never sees the
held-out subjects, and evaluate tests on exactly them or refuses."""

import json
import os

import numpy as np
import pytest

from configs import dataset_a
from configs import evaluate as eval_config
from conftest import make_tiny, toy_dataset
from spect_fastgan_jax import conditions, errors, input_pipeline, modes, train
from spect_fastgan_jax.data import dataset as dataset_lib
from spect_fastgan_jax.data import source
from spect_fastgan_jax.evaluation import classifier, report, score, utility


def _config(npz=None, fraction=0.34):
  config = make_tiny(dataset_a.get_config())
  config.num_epochs = 1
  config.data.holdout_fraction = fraction
  if npz:
    config.data.npz = str(npz)
  return config


def test_split_is_per_pattern_and_by_subject():
  ds = toy_dataset(3)
  ds = dataset_lib.SliceDataset(ds.slices, ds.level, ds.pattern, ds.side,
                                np.array([f"p{i // 3}" for i in range(len(ds))]))  # 3 slices a subject
  held = dataset_lib.subject_split(ds, 0.34, seed=0)
  for subject in np.unique(ds.subject):   # a subject's slices all go one way
    assert len(set(held[ds.subject == subject])) == 1
  for pattern in ("normal", "unilateral", "bilateral"):
    assert held[ds.pattern == pattern].any() and not held[ds.pattern == pattern].all()
  assert not dataset_lib.subject_split(ds, 0.0, seed=0).any()
  # Two subjects a pattern: at most one held out, whatever the share.
  two = toy_dataset(1, levels=("CER", "BG"))   # one subject a condition: two a pattern
  for fraction in (0.5, 0.75, 0.99):
    held2 = dataset_lib.subject_split(two, fraction, seed=0)
    for pattern in ("normal", "unilateral", "bilateral"):
      assert held2[two.pattern == pattern].sum() == 1
  # A holdout asked for where no pattern has two subjects is an error, not a silent no-op.
  one = toy_dataset(1, levels=("COR",))
  cfg1 = _config(fraction=0.5).data
  cfg1.levels = ("COR",)
  with pytest.raises(errors.ConfigError, match="data.holdout_fraction is 0.5"):
    source.split_holdout(one, cfg1)
  cfg = _config().data
  cfg.holdout_seed = 1
  other = source.split_holdout(ds, cfg)
  assert set(other.subjects()["holdout"]) != set(ds.subject[held])


def test_held_out_subjects_never_reach_the_gan(tmp_path, monkeypatch):
  ds = toy_dataset(3)
  drawn_from = []
  device_data = input_pipeline.device_data
  monkeypatch.setattr(input_pipeline, "device_data",
                      lambda d, *a, **k: drawn_from.append(d) or device_data(d, *a, **k))
  workdir = tmp_path / "run"
  train.train(_config(), str(workdir), ds, log=lambda m: None)
  subjects = json.load(open(workdir / "subjects.json"))
  assert subjects["holdout"] and not set(subjects["holdout"]) & set(subjects["train"])
  assert sorted(subjects["train"] + subjects["holdout"]) == sorted(ds.subject)
  # Every training batch is gathered from this one device copy of the data set.
  (seen,) = drawn_from
  assert set(seen.subject) == set(subjects["train"])
  held = ds.slices[np.isin(ds.subject, subjects["holdout"])]
  assert not any((seen.slices == h).all(axis=(1, 2, 3)).any() for h in held)   # not by content either
  record = json.load(open(workdir / "config.json"))
  assert sum(record["data_counts"].values()) == len(seen)
  # Resuming on data whose split differs (a subject gone) is refused before any work.
  config = _config()
  config.num_epochs = 2
  fewer = ds.subset(ds.subject != subjects["holdout"][0])
  with pytest.raises(errors.RunError, match="subjects.json"):
    train.train(config, str(workdir), fewer, log=lambda m: None)


def _write_subjects(path, train_subjects, holdout):
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "subjects.json"), "w") as f:
    json.dump({"train": train_subjects, "holdout": holdout}, f)
  return report.RunSpec(os.path.basename(path), str(path), None, 1)


def test_evaluation_that_would_test_on_a_trained_subject_is_refused(tmp_path):
  test = toy_dataset(1)   # subjects s0..s8
  unseen = _write_subjects(tmp_path / "a", ["x1", "x2"], sorted(test.subject))
  report.check_unseen(test, [unseen])
  overlapping = _write_subjects(tmp_path / "b", ["x1", "s4", "s7"], [])
  with pytest.raises(errors.DataError, match=r"subject 's4' and 1 more, which the run b"):
    report.check_unseen(test, [unseen, overlapping])
  unknown = report.RunSpec("c", str(tmp_path / "c"), None, 1)
  with pytest.raises(errors.DataError, match="records no training subjects"):
    report.check_unseen(test, [unknown])


def test_bad_holdout_fields_are_refused():
  for field, value in (("holdout_fraction", 1.0), ("holdout_fraction", -0.1), ("holdout_seed", -1)):
    config = _config()
    config.data[field] = value
    with pytest.raises(errors.ConfigError, match=f"data.{field}"):
      train.check_config(config)


def _same_interval(got: dict, want: dict):
  assert got["n"] == want["n"] and got["mean"] == pytest.approx(want["mean"])
  assert (got["ci"] is None) == (want["ci"] is None)
  if want["ci"] is not None:
    assert got["ci"] == pytest.approx(want["ci"])


def test_evaluate_tests_on_the_held_out_subjects(tmp_path, monkeypatch):
  npz = tmp_path / "toy.npz"
  ds = toy_dataset(3)
  ds.save(npz)
  config = _config(npz)
  config.evaluate = eval_config.get_config()
  config.evaluate.classifier.widths = (4, 8, 8)
  config.evaluate.classifier.features = 16
  config.evaluate.classifier.steps = 20
  config.evaluate.ms_ssim_pairs = 20
  config.evaluate.augmentation_study = True   # replaced by the utility study on a holdout run
  config.evaluate.utility_seeds = 2
  config.evaluate.utility_steps = 10
  workdir = str(tmp_path / "run")
  train.train(config, workdir, ds, log=lambda m: None)
  holdout = json.load(open(os.path.join(workdir, "subjects.json")))["holdout"]
  # select scores epochs with a classifier trained and tested on training subjects only.
  classified = []
  reference = classifier.reference
  monkeypatch.setattr(classifier, "reference",
                      lambda ds, *a, **k: classified.append(set(ds.subject)) or reference(ds, *a, **k))
  modes.select(config, workdir, every=1, log=lambda m: None)
  assert classified and not classified[-1] & set(holdout)
  out = modes.evaluate(config, workdir, epoch=1, log=lambda m: None)
  r = json.load(open(os.path.join(out, "report.json")))
  assert r["test_subjects"] == {"unseen_by_the_runs": True, "subjects": holdout}
  assert r["classifier"]["holdout_subjects"] == len(holdout)
  memo = r["memorisation"][os.path.basename(workdir)]
  assert memo["settings"]["new_patients"] == "held-out subjects the run never saw"
  held_rows = int(np.isin(ds.subject, holdout).sum())
  assert sum(c["new_patients"]["n"] for c in memo["per_condition"]["pixel"].values()) == held_rows
  # The generated images match the training subjects' counts, not the whole set's.
  assert sum(r["counts"].values()) == len(ds) - held_rows
  md = open(os.path.join(out, "report.md")).read()
  assert "patients no run under test has seen" in md
  # The utility study: every arm over both seeds, tested on the held-out subjects only.
  assert r["augmentation"] == {}
  u = r["utility"][os.path.basename(workdir)]
  assert u["test_subjects"] == holdout and u["seeds"] == [0, 1] and u["steps"] == 10
  assert list(u["arms"]) == list(utility.ARMS)
  train_counts = {k: v for k, v in r["counts"].items()}
  top = max(train_counts.values())
  assert u["synthetic_counts"] == {k: top - v for k, v in train_counts.items() if v < top}
  for arm in u["arms"].values():
    assert len(arm["seeds"]) == 2
    for part in ("overall", "balanced"):
      _same_interval(arm[part], utility.interval([x[part] for x in arm["seeds"]]))
    assert [x["balanced"] for x in arm["seeds"]] == pytest.approx(
        [np.mean(list(x["recall"].values())) for x in arm["seeds"]])
    held_conditions = {f"{l}/{p}" for l, p, j in zip(ds.level, ds.pattern, ds.subject) if j in holdout}
    assert set(arm["recall"]) == held_conditions   # a recall for every condition the test set has
  best = u["best_without_gan"]
  assert best in ("real", "real, rebalanced", "real, classic augmentation")
  assert np.mean([x["balanced"] for x in u["arms"][best]["seeds"]]) == max(
      np.mean([x["balanced"] for x in u["arms"][a]["seeds"]]) for a in u["paired"]["real + synthetic"])
  for arm, against in u["paired"].items():   # paired by classifier seed
    for base, d in against.items():
      per_seed = [a["balanced"] - b["balanced"] for a, b in zip(u["arms"][arm]["seeds"], u["arms"][base]["seeds"])]
      _same_interval(d["balanced"], utility.interval(per_seed))
    assert u["paired_vs_best_without_gan"][arm] == against[best]
  assert "## Utility" in md and "Paired differences" in md
  assert "synthetic slices drawn as often as every real slice" in open(os.path.join(out, "card.md")).read()


def test_utility_interval_and_counts():
  got = utility.interval([1.0, 2.0, 3.0])
  assert got["mean"] == 2.0 and got["ci"] == pytest.approx([2 - 4.302653 / 3 ** 0.5, 2 + 4.302653 / 3 ** 0.5])
  assert utility.interval([0.5])["ci"] is None
  ds = toy_dataset(2)
  ds = ds.subset(~((ds.level == "BG") & (ds.pattern == "bilateral") & (ds.subject == ds.subject[ds.level == "BG"][-1])))
  counts = utility.synthetic_counts(ds, ("CER", "BG", "COR"))
  assert counts == {("BG", "bilateral"): 1}


def test_classifier_draws_rebalanced_or_as_the_data_has_it():
  images = np.zeros((12, 1, 64, 64), np.float32)
  pattern = ["normal"] * 9 + ["bilateral"] * 3
  data = classifier.Labelled.from_strings(images, ["BG"] * 12, pattern)
  rare = lambda idx: float(np.isin(idx, [9, 10, 11]).mean())
  assert abs(rare(classifier.batch_index(data, 500, 32, 0, balance=True)) - 0.5) < 0.03
  assert abs(rare(classifier.batch_index(data, 500, 32, 0, balance=False)) - 0.25) < 0.03
  # The classic augmentation flips normal and bilateral slices, never a unilateral one.
  assert dict(zip(conditions.PATTERNS, classifier._FLIP_PATTERNS.tolist())) == {
      "normal": True, "unilateral": False, "bilateral": True}


def test_a_synthetic_share_draws_each_condition_evenly_and_that_share_of_its_synthetic_slices():
  images = np.zeros((18, 1, 64, 64), np.float32)
  real = classifier.Labelled.from_strings(images[:10], ["BG"] * 10, ["normal"] * 8 + ["bilateral"] * 2)
  synth = classifier.Labelled.from_strings(images[10:], ["BG"] * 8, ["bilateral"] * 6 + ["normal"] * 2,
                                           synthetic=True)
  data = classifier.Labelled.concat([real, synth])
  assert data.synthetic.tolist() == [False] * 10 + [True] * 8
  idx = classifier.batch_index(data, 1000, 32, 0, balance=True, synthetic_share=0.3)
  drawn = np.bincount(idx.ravel(), minlength=18) / idx.size
  bilateral, normal = data.pattern == conditions.PATTERNS.index("bilateral"), data.pattern == 0
  assert abs(drawn[bilateral].sum() - 0.5) < 0.01
  assert abs(drawn[bilateral & data.synthetic].sum() - 0.5 * 0.3) < 0.01
  assert abs(drawn[normal & data.synthetic].sum() - 0.5 * 0.3) < 0.01
  # Within a kind, every slice equally often: 2 real bilateral slices share 0.35.
  assert np.allclose(drawn[bilateral & ~data.synthetic], 0.5 * 0.7 / 2, atol=0.01)
  # Without the share, a condition's slices are drawn equally, whichever kind.
  idx = classifier.batch_index(data, 1000, 32, 0, balance=True)
  assert abs(np.isin(idx, np.flatnonzero(bilateral & data.synthetic)).mean() - 0.5 * 6 / 8) < 0.01
  # A condition with one kind only draws it all of its share.
  only_real = classifier.Labelled.concat([real, classifier.Labelled.from_strings(
      images[10:16], ["BG"] * 6, ["bilateral"] * 6, synthetic=True)])
  idx = classifier.batch_index(only_real, 1000, 32, 0, balance=True, synthetic_share=0.3)
  assert abs(np.isin(idx, np.arange(8)).mean() - 0.5) < 0.01


def test_the_synthetic_arms_draw_with_the_configured_share(monkeypatch):
  ds = toy_dataset(2)
  calls = []
  monkeypatch.setattr(classifier, "train", lambda data, cfg, log, **kw: calls.append((data, kw)))
  monkeypatch.setattr(classifier, "accuracy", lambda *a, **k: {
      "overall": 1.0, "per_condition": {"BG/normal": 1.0}, "side": None})
  fake = score.Group("run", ds.slices[:3, 1], ds.level[:3], ds.pattern[:3], ds.side[:3])
  cfg = eval_config.get_config().classifier
  u = utility.study(ds, ds, fake, cfg, ("CER", "BG", "COR"), [0], 5, synthetic_share=0.25)
  assert u["synthetic_share"] == 0.25
  got = {name: (data.synthetic.sum(), kw["balance"], kw["classic"], kw["synthetic_share"])
         for name, (data, kw) in zip(utility.ARMS, calls)}
  assert got == {"real": (0, False, False, 0.0), "real, rebalanced": (0, True, False, 0.0),
                 "real, classic augmentation": (0, True, True, 0.0),
                 "real + synthetic": (3, True, False, 0.25),
                 "real + synthetic, classic augmentation": (3, True, True, 0.25)}
  md = "\n".join(utility.markdown("run", u))
  assert "they are 25% of each condition's draws, every condition drawn equally often" in md
  calls.clear()
  u = utility.study(ds, ds, fake, cfg, ("CER", "BG", "COR"), [0], 5)
  assert [kw["balance"] for _, kw in calls][3:] == [False, False]
  assert "they are drawn as often as every real slice" in "\n".join(utility.markdown("run", u))


def test_the_arms_without_synthetic_slices_are_trained_once_per_seed(tmp_path, monkeypatch):
  ds = toy_dataset(2)
  trained = []
  monkeypatch.setattr(classifier, "train", lambda data, cfg, log, **kw: trained.append(
      (bool(data.synthetic.any()), kw["seed"])) or len(trained))
  # Each classifier scores differently, so a reused figure shows where it came from.
  monkeypatch.setattr(classifier, "accuracy", lambda t, *a, **k: {
      "overall": t / 100, "per_condition": {"BG/normal": t / 100}, "side": None})
  fake = score.Group("run", ds.slices[:3, 1], ds.level[:3], ds.pattern[:3], ds.side[:3])
  cfg = eval_config.get_config().classifier
  levels = ("CER", "BG", "COR")
  first = utility.study(ds, ds, fake, cfg, levels, [0, 1], 5, cache_dir=str(tmp_path))
  assert len(trained) == 10 and first["reused"] == []
  trained.clear()
  again = utility.study(ds, ds, fake, cfg, levels, [0, 1, 2], 5, synthetic_share=0.5, cache_dir=str(tmp_path))
  # Seeds 0 and 1 of the three real arms come from the cache; seed 2 and the synthetic arms train.
  assert trained == [(False, 2)] * 3 + [(True, 0), (True, 1), (True, 2)] * 2
  assert len(again["reused"]) == 6
  for arm in ("real", "real, rebalanced", "real, classic augmentation"):
    assert again["arms"][arm]["seeds"][:2] == first["arms"][arm]["seeds"]
  # Other steps, or other test subjects, are other classifiers.
  trained.clear()
  utility.study(ds, ds, fake, cfg, levels, [0], 6, cache_dir=str(tmp_path))
  utility.study(ds, ds.subset(ds.subject != ds.subject[0]), fake, cfg, levels, [0], 5, cache_dir=str(tmp_path))
  assert [t for t in trained if not t[0]] == [(False, 0)] * 6


@pytest.mark.parametrize("share", [1.0, -0.1, 2])
def test_a_bad_synthetic_share_is_refused(share):
  cfg = eval_config.get_config()
  cfg.utility_synthetic_share = share
  with pytest.raises(errors.ConfigError, match="evaluate.utility_synthetic_share"):
    utility.check_config(cfg)


def test_limit_subjects_keeps_k_training_subjects_of_a_condition(tmp_path):
  npz = tmp_path / "toy.npz"
  toy_dataset(4).save(npz)
  config = _config(npz, fraction=0.25)
  config.data.limit_subjects = "BG/bilateral:1, COR/unilateral:2"
  split = source.load_split(config.data, log=lambda m: None)
  full = source.load_split(_config(npz, fraction=0.25).data, log=lambda m: None)
  counts, before = split.train.counts(), full.train.counts()
  assert counts[("BG", "bilateral")] == 1 and counts[("COR", "unilateral")] == 2
  assert {c: k for c, k in counts.items() if c not in {("BG", "bilateral"), ("COR", "unilateral")}} == {
      c: k for c, k in before.items() if c not in {("BG", "bilateral"), ("COR", "unilateral")}}
  assert split.holdout.counts() == full.holdout.counts()   # the test subjects are untouched
  have = before[("BG", "bilateral")]   # one slice a subject in the toy set
  config.data.limit_subjects = f"BG/bilateral:{have + 1}"
  with pytest.raises(errors.DataError,
                     match=f"keeps {have + 1} subjects of BG/bilateral, but its training part has only {have}"):
    source.load_split(config.data, log=lambda m: None)


@pytest.mark.parametrize("text", ["BG/bilateral", "XX/normal:3", "BG/bilateral:0", "BG/sick:2",
                                  "BG/bilateral:2,BG/bilateral:3"])
def test_bad_limit_subjects_is_refused(text):
  config = _config()
  config.data.limit_subjects = text
  with pytest.raises(errors.ConfigError, match="data.limit_subjects"):
    train.check_config(config)
