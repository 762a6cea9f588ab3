"""--mode=augment (spect_fastgan_jax/augmented_set.py) and the model card on a tiny run."""

import csv
import json
import os

import numpy as np
import pytest

from configs import dataset_a
from configs import evaluate as eval_config
from conftest import make_tiny, save_random_sampler_checkpoints, toy_dataset
from spect_fastgan_jax import Sampler, augmented_set, errors, modes, outputs
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data import manifest, source
from spect_fastgan_jax.evaluation import card as card_lib
from spect_fastgan_jax.evaluation import memorisation


def _config(npz):
  """What launch.py would pass: a tiny run config with a tiny `evaluate` block."""
  config = make_tiny(dataset_a.get_config())
  config.data.npz = str(npz)
  config.data.holdout_fraction = 0.25
  config.evaluate = eval_config.get_config()
  config.evaluate.classifier.widths = (4, 8, 8)
  config.evaluate.classifier.features = 16
  config.evaluate.classifier.steps = 20
  config.sample.batch_size = 32
  return config


def fake_run(workdir, config, epochs=(1, 2)):
  """A run's record, subjects and sampler checkpoints as training writes them, the
  weights random initialisations (nothing reads more; no training compile is spent)."""
  split = source.load_split(config.data, log=lambda m: None)
  workdir_lib.write_run_config(workdir, config, split.train)
  workdir_lib.write_subjects(workdir, split.subjects())
  save_random_sampler_checkpoints(workdir, config, epochs)
  return split


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("augment")
  npz = tmp / "toy.npz"
  ds = toy_dataset(4)
  # Uneven counts, and no CER/bilateral (as the paper's Table 1): balancing has work to do.
  keep = ~((ds.level == "CER") & (ds.pattern == "bilateral"))
  keep &= ~((ds.level == "BG") & (ds.pattern == "normal") & (np.arange(len(ds)) % 4 == 0))
  ds.subset(keep).save(npz)
  config = _config(npz)
  workdir = str(tmp / "run")
  split = fake_run(workdir, config)
  return config, workdir, split, tmp


@pytest.fixture(scope="module")
def balanced(run):
  config, workdir, split, tmp = run
  logs = []
  out = modes.augment(config, workdir, str(tmp / "balanced"), epoch=2, balance=True, log=logs.append)
  return out, logs


def _manifest_rows(out):
  with open(os.path.join(out, "manifest.csv"), newline="") as f:
    return list(csv.DictReader(f))


def test_balance_brings_every_condition_to_the_largest_real_count(run, balanced):
  config, workdir, split, _ = run
  out, _ = balanced
  rows = _manifest_rows(out)
  assert list(rows[0]) == list(augmented_set.MANIFEST_COLUMNS)
  real_counts = {c: k for c, k in split.train.counts().items() if k}
  top = max(real_counts.values())
  got = {}
  for r in rows:
    got.setdefault((r["level"], r["pattern"]), []).append(r["source"])
  assert set(got) == set(real_counts)          # never CER/bilateral: the run never learned it
  for c, sources in got.items():
    assert len(sources) == top
    assert sources.count("real") == real_counts[c]
  assert sum(r["source"] == "synthetic" for r in rows) == sum(top - k for k in real_counts.values()) > 0
  # Training subjects only: the held-out ones stay out of the set.
  subjects = {r["subject"] for r in rows if r["source"] == "real"}
  assert subjects == set(split.subjects()["train"]) and not subjects & set(split.subjects()["holdout"])
  info = json.load(open(os.path.join(out, "info.json")))
  assert info["epoch"] == 2 and info["run"] == os.path.abspath(workdir)
  assert info["config_hash"] == workdir_lib.config_hash(workdir_lib.read_run_record(workdir)["config"])
  assert info["checkpoint"].endswith(os.path.join("checkpoints", "sampler", "2"))
  assert info["provenance"]["git_commit"] and info["request"] == {"balance": True, "per_condition": None}
  assert info["held_out_subjects_left_out"] == split.subjects()["holdout"]


def test_the_manifest_loads_back_as_the_real_slices_and_the_generated_images(run, balanced):
  config, workdir, split, _ = run
  out, _ = balanced
  rows = _manifest_rows(out)
  ds = manifest.load_manifest(os.path.join(out, "manifest.csv"), log=lambda m: None)
  real = np.array([r["source"] == "real" for r in rows])
  # Real rows: the training slices and their neighbours, bit for bit, with their labels.
  np.testing.assert_array_equal(ds.slices[real], split.train.slices)
  for f in ("level", "pattern", "side", "subject"):
    np.testing.assert_array_equal(getattr(ds, f)[real], getattr(split.train, f))
  # Synthetic rows: the image of (epoch, seed, index), three times.
  sampler = Sampler.load(workdir, epoch=2, batch_size=32)
  for k in np.flatnonzero(~real)[:6]:
    r = rows[k]
    assert (int(r["epoch"]), int(r["seed"])) == (2, 0) and r["subject"].startswith("synthetic-")
    image = sampler.generate(r["level"], r["pattern"], seed=0, index=[int(r["index"])])[0]
    for j in range(3):
      np.testing.assert_allclose(ds.slices[k, j], image, atol=1e-6)


def test_unilateral_sides_are_read_by_the_classifier_and_the_card_says_so(run, balanced):
  _, workdir, _, _ = run
  out, logs = balanced
  rows = _manifest_rows(out)
  synth_uni = [r for r in rows if r["source"] == "synthetic" and r["pattern"] == "unilateral"]
  assert synth_uni and all(r["side"] in ("left", "right") for r in synth_uni)
  assert all(r["side"] == "" for r in rows if r["pattern"] != "unilateral")
  info = json.load(open(os.path.join(out, "info.json")))
  accuracy = info["side"]["classifier_holdout_side_accuracy"]
  assert info["side"]["read_by_classifier"] and 0 <= accuracy <= 1
  card = json.load(open(os.path.join(out, "card.json")))
  assert card["side"]["read_by_classifier"] and card["side"]["classifier_holdout_side_accuracy"] == accuracy
  md = open(os.path.join(out, "card.md")).read()
  assert "read by the condition classifier's side head" in md and f"{accuracy:.3f}" in md
  # No --mode=evaluate report of epoch 2: the card says so instead of inventing numbers.
  assert card["fidelity"] is None and "**Not evaluated**" in md
  assert any("not evaluated" in m for m in logs)


def test_near_copy_filter_is_on_by_default_and_recorded(run, balanced, monkeypatch):
  config, workdir, split, tmp = run
  out, _ = balanced
  f = json.load(open(os.path.join(out, "info.json")))["near_copy_filter"]
  n = sum(r["source"] == "synthetic" for r in _manifest_rows(out))
  assert f["drawn"] == n + len(f["dropped"]) and "leave-one-subject-out" in f["rule"]
  assert f["quantile"] == config.evaluate.memorisation.near_copy_quantile and f["thresholds"]
  # A random generator copies nothing; a reference that calls the nearer half of the
  # first draw near-copies shows each is dropped, recorded and replaced by a further index.
  real_reference = memorisation.near_copy_reference

  class HalfOfFirstDraw:
    def __init__(self, *args, **kwargs):
      self.ref, self.calls = real_reference(*args, **kwargs), 0

    def near_copies(self, images, level, pattern):
      near, dist = self.ref.near_copies(images, level, pattern)
      self.calls += 1
      return (near | (dist < np.median(dist)) if self.calls == 1 else near), dist

    def describe(self):
      return self.ref.describe()

  monkeypatch.setattr(memorisation, "near_copy_reference", HalfOfFirstDraw)
  out2 = modes.augment(config, workdir, str(tmp / "filtered"), epoch=2, per_condition=10, log=lambda m: None)
  f2 = json.load(open(os.path.join(out2, "info.json")))["near_copy_filter"]
  rows = [r for r in _manifest_rows(out2) if r["source"] == "synthetic"]
  assert len(f2["dropped"]) == len(rows) // 2 and f2["drawn"] == len(rows) + len(f2["dropped"])
  kept = {int(r["index"]) for r in rows}
  assert not kept & {d["index"] for d in f2["dropped"]} and max(kept) >= len(rows)
  assert "dropped %d of %d" % (len(f2["dropped"]), f2["drawn"]) in open(os.path.join(out2, "card.md")).read()
  # Off: nothing dropped, indices 0..N-1.
  out3 = modes.augment(config, workdir, str(tmp / "unfiltered"), epoch=2, per_condition=10,
                       near_copy_filter=False, log=lambda m: None)
  assert json.load(open(os.path.join(out3, "info.json")))["near_copy_filter"] is None
  rows3 = [r for r in _manifest_rows(out3) if r["source"] == "synthetic"]
  assert sorted(int(r["index"]) for r in rows3) == list(range(len(rows3)))


def test_per_condition_brings_each_condition_up_to_n_and_keeps_every_real_slice(run):
  real = {("BG", "normal"): 5, ("BG", "unilateral"): 2, ("COR", "normal"): 9}
  assert augmented_set.synthetic_counts(real, False, 7) == {("BG", "normal"): 2, ("BG", "unilateral"): 5}
  assert augmented_set.synthetic_counts(real, True, None) == {("BG", "normal"): 4, ("BG", "unilateral"): 7}
  assert augmented_set.synthetic_counts({**real, ("CER", "bilateral"): 0}, True, None) == \
      augmented_set.synthetic_counts(real, True, None)


@pytest.mark.parametrize("kwargs, says", [({}, "--balance"), ({"balance": True, "per_condition": 3}, "not both"),
                                          ({"per_condition": 0}, "whole number >= 1")])
def test_a_bad_request_is_refused_writing_nothing(run, kwargs, says):
  config, workdir, _, tmp = run
  out = tmp / "refused"
  with pytest.raises(errors.ConfigError, match=says):
    modes.augment(config, workdir, str(out), epoch=2, log=lambda m: None, **kwargs)
  assert not out.exists()


def test_an_existing_folder_is_never_written_to(run):
  config, workdir, _, tmp = run
  out = tmp / "exists"
  out.mkdir()
  (out / "mine.txt").write_text("keep")
  with pytest.raises(errors.OutputExistsError, match="new --out"):
    modes.augment(config, workdir, str(out), epoch=2, balance=True, log=lambda m: None)
  assert os.listdir(out) == ["mine.txt"]


def test_an_epoch_without_a_checkpoint_is_refused_naming_the_saved_ones(run):
  config, workdir, _, tmp = run
  with pytest.raises(errors.CheckpointError, match="epoch 9 .*1-2"):
    modes.augment(config, workdir, str(tmp / "no_epoch"), epoch=9, balance=True, log=lambda m: None)
  assert not (tmp / "no_epoch").exists()


def test_training_data_that_cannot_be_read_is_refused_writing_nothing(run):
  config, workdir, _, tmp = run
  npz = config.data.npz
  os.rename(npz, npz + ".moved")
  try:
    with pytest.raises(errors.DataError, match="--mode=augment needs the run's training data"):
      modes.augment(config, workdir, str(tmp / "no_data"), epoch=2, balance=True, log=lambda m: None)
  finally:
    os.rename(npz + ".moved", npz)
  assert not (tmp / "no_data").exists()


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_an_augment_stopped_midway_leaves_no_folder(run, monkeypatch, stop):
  config, workdir, _, tmp = run
  written = []
  real_write = outputs.write_nifti

  def write_then_stop(images, path):
    if len(written) == 5:
      raise stop("stopped midway")
    written.append(path)
    real_write(images, path)

  monkeypatch.setattr(outputs, "write_nifti", write_then_stop)
  before = set(os.listdir(tmp))
  with pytest.raises(stop):
    modes.augment(config, workdir, str(tmp / "stopped"), epoch=2, balance=True, log=lambda m: None)
  assert len(written) == 5 and all(".tmp-" in p for p in written)
  assert set(os.listdir(tmp)) == before   # neither the folder nor its temporary one


def test_the_card_of_an_evaluated_epoch_states_the_criteria_and_the_selection(run, tmp_path):
  """card.build reads report.json and select.json; it recomputes nothing."""
  _, workdir, split, _ = run
  report = {
      "runs": [{"label": "run", "epoch": 2}], "seed": 0, "counts": {"BG/normal": 3},
      "classifier": {"holdout_accuracy": {"overall": 0.9, "side": 0.8}},
      "test_subjects": {"unseen_by_the_runs": True},
      "runs_scores": {"run": {"side_correctness": None}},
      "criteria": {"run": [
          {"name": "accuracy", "rule": "condition accuracy >= 0.855", "met": True, "values": {"all": 0.91},
           "failing": [], "summary": "yes", "format": "{:.3f}"},
          {"name": "sd", "rule": "pixel-wise SD ratio in [0.8, 1.2]", "met": False,
           "values": {"BG/normal": 0.5}, "failing": ["BG/normal"], "summary": "0 of 1", "format": "{:.2f}"}]},
      "memorisation": {"run": {"near_copy_share": {"pixel": 0.03}, "c_t": {"pixel": -1.5},
                               "settings": {"quantile": 0.01, "new_patients": "held-out subjects"}}},
      "utility": {"run": {"skipped": "replays its training data"}}}
  select_dir = os.path.join(workdir, "evaluation", "select_1-2_every1_seed0")
  os.makedirs(select_dir, exist_ok=True)
  with open(os.path.join(select_dir, "select.json"), "w") as f:
    json.dump({"best_epoch": 2, "reason": "lowest mean Frechet distance (1.5)"}, f)
  try:
    card = card_lib.build(workdir, 2, report, "report.json")
  finally:
    os.remove(os.path.join(select_dir, "select.json"))
  assert card["fidelity"]["met"] == 1 and card["fidelity"]["judged"] == 2
  assert card["epoch"]["chosen_by"] == "--mode=select" and "Frechet" in card["epoch"]["reason"]
  assert card["training_data"]["counts"] == workdir_lib.data_counts(split.train)
  assert card["training_data"]["subjects"] == {k: len(v) for k, v in split.subjects().items()}
  assert card["memorisation"]["c_t"] == {"pixel": -1.5}
  md = card_lib.markdown(card)
  for text in ("Fidelity criteria met: 1 of 2** (misses: sd)", "**missed**: pixel-wise SD ratio",
               "BG/normal 0.50", "3.0% (pixel; 1% expected), C_T -1.50", "Not run: replays",
               "Not validated clinically", "2D slices only",
               "simulated default data set" if card["training_data"]["kind"] == "simulated" else "npz"):
    assert text in md, text
  with pytest.raises(errors.RunError, match="no run 'run' at epoch 1"):
    card_lib.build(workdir, 1, report, "report.json")
