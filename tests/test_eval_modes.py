"""--mode=select and --mode=evaluate end to end on a tiny trained run."""

import copy
import json
import os
import subprocess
import sys

import pytest

from configs import dataset_a
from conftest import ROOT, make_tiny, toy_dataset
from spect_fastgan_jax import errors, modes, train
from configs import evaluate as eval_config


def _user_config(npz):
  """What launch.py would pass: the run's config with a tiny `evaluate` block."""
  config = make_tiny(dataset_a.get_config())
  config.data.npz = str(npz)
  config.evaluate = eval_config.get_config()
  config.evaluate.classifier.widths = (4, 8, 8)
  config.evaluate.classifier.features = 16
  config.evaluate.classifier.steps = 20
  config.evaluate.ms_ssim_pairs = 20
  config.evaluate.augmentation_repeats = 2
  config.evaluate.augmentation_steps = 20   # the reference's own: its first real-only seed is reused
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("eval")
  npz = tmp / "toy.npz"
  toy_dataset(3).save(npz)
  config = _user_config(npz)
  workdir = str(tmp / "run")
  train.train(config, workdir, toy_dataset(3), log=lambda m: None)
  return config, workdir


def test_select_scores_epochs_and_names_the_best(run):
  config, workdir = run
  logs = []
  result = modes.select(config, workdir, every=1, log=logs.append)
  assert [r["epoch"] for r in result["rows"]] == [1, 2]
  assert result["best_epoch"] in (1, 2) and result["reason"]
  out = os.path.join(workdir, "evaluation", "select_1-2_every1_seed0")
  for name in ("select.json", "select.md", "select.csv", "select.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0
  assert f"**Best epoch: {result['best_epoch']}**" in open(os.path.join(out, "select.md")).read()
  assert any("training the condition classifier" in m for m in logs)
  with pytest.raises(FileExistsError, match="--overwrite"):
    modes.select(config, workdir, every=1, log=logs.append)
  # Rerun with --overwrite: the cached classifier is reused, not retrained. The rule's
  # thresholds come from evaluate.select: no accuracy margin leaves only the most
  # accurate epoch, and an unreachable diversity makes the rule drop diversity.
  logs.clear()
  strict = copy.deepcopy(config)
  strict.evaluate.select.accuracy_margin = 0.0
  strict.evaluate.select.min_diversity = 50.0
  rerun = modes.select(strict, workdir, every=1, overwrite=True, log=logs.append)
  assert any("loaded the condition classifier" in m for m in logs)
  assert not any("training the condition classifier" in m for m in logs)
  top = max(r["accuracy"] for r in rerun["rows"])
  assert next(r for r in rerun["rows"] if r["epoch"] == rerun["best_epoch"])["accuracy"] == top
  assert f"(best {top:.3f} - 0.0)" in rerun["reason"]
  assert "no epoch reached diversity ratio 50.0" in rerun["reason"]


def test_evaluate_writes_report_with_every_pattern_and_metric(run):
  config, workdir = run
  best = modes.select(config, workdir, every=1, overwrite=True, log=lambda m: None)["best_epoch"]
  out = modes.evaluate(config, workdir, log=lambda m: None)   # epoch: select's best
  assert os.path.basename(out) == f"epoch_{best:04d}_seed0"
  report = json.load(open(os.path.join(out, "report.json")))
  assert report["runs"][0]["epoch"] == best
  for pattern in ("normal", "unilateral", "bilateral"):
    for metric in ("mc", "sd", "lr"):
      c = report["paper"]["per_pattern"][pattern][metric]
      assert 0 <= c["anova_p"] <= 1 and c["n"] == {"real": 9, "run": 9}
  assert set(report["paper"]["per_condition"]) == {f"{l}/{p}" for l in ("CER", "BG", "COR")
                                                   for p in ("normal", "unilateral", "bilateral")}
  scores = report["runs_scores"]["run"]
  assert 0 <= scores["accuracy"]["overall"] <= 1 and scores["summary"]["frechet_mean"] >= 0
  aug = report["augmentation"]["run"]
  assert set(aug) == {"real only", "synthetic only", "real + synthetic"}
  for arm in aug.values():   # two training seeds each; the figure is their mean
    assert arm["seeds"] == [0, 1] and len(arm["repeats"]) == 2
    assert arm["overall"] == pytest.approx(sum(r["overall"] for r in arm["repeats"]) / 2)
    assert arm["sd"]["overall"] == pytest.approx(abs(arm["repeats"][0]["overall"] - arm["repeats"][1]["overall"]) / 2)
  # The thread setting the classifier was trained under is on record (it moves its figures).
  assert report["classifier"]["trained_with"]["xla_flags"] == os.environ.get("XLA_FLAGS", "")
  assert "XLA_FLAGS" in open(os.path.join(out, "report.md")).read()
  # The real-only arm's first seed is the cached reference, not a retrained copy.
  assert aug["real only"]["repeats"][0] == report["classifier"]["holdout_accuracy"]
  assert aug["synthetic only"]["side"] is None and aug["real + synthetic"]["side"] is not None
  md = open(os.path.join(out, "report.md")).read()
  for section in ("per pattern", "Diversity", "Condition fidelity", "Left/right balance",
                  "Data augmentation", "fig4_images.png", "fig5_boxplots.png", "fig6_maps.png"):
    assert section in md
  memo = report["memorisation"]["run"]
  assert set(memo["per_condition"]) == {"pixel", "feature"}
  assert set(memo["per_condition"]["pixel"]) == set(report["counts"])
  for c in memo["per_condition"]["pixel"].values():
    assert c["new_patients"]["n"] == 3 and 0 <= c["near_copy_share"] <= 1
  assert len(memo["closest"]) == 16 and "Memorisation audit" in md and memo["figure"] in md
  # The criteria block judges this run from the same report (evaluation/criteria.py).
  judged = {c["name"]: c for c in report["criteria"]["run"]}
  assert list(judged) == ["diversity", "accuracy", "sd", "mc", "lr", "side", "memorisation"]
  assert judged["accuracy"]["values"]["all"] == scores["accuracy"]["overall"]
  assert judged["memorisation"]["values"] == memo["c_t"]
  assert "Fidelity criteria" in md and f"of {len(judged)} met" in md
  # The model card beside it states the same numbers, and why select chose the epoch.
  card = json.load(open(os.path.join(out, "card.json")))
  assert [c["values"] for c in card["fidelity"]["criteria"]] == [c["values"] for c in report["criteria"]["run"]]
  assert card["fidelity"]["met"] == sum(c["met"] is True for c in report["criteria"]["run"])
  assert card["epoch"]["chosen_by"] == "--mode=select" and card["epoch"]["epoch"] == best
  assert card["memorisation"]["c_t"] == memo["c_t"] and card["run"]["condition_vector"][-3:] == [
      "normal", "unilateral", "bilateral"]
  card_md = open(os.path.join(out, "card.md")).read()
  assert f"Fidelity criteria met: {card['fidelity']['met']} of {card['fidelity']['judged']}" in card_md
  assert "Not validated clinically" in card_md and "## Training data" in card_md
  for fig in ("fig4_images.png", "fig5_boxplots.png", "fig6_maps.png", memo["figure"]):
    assert os.path.getsize(os.path.join(out, fig)) > 1000
  with pytest.raises(FileExistsError):
    modes.evaluate(config, workdir, epoch=best, log=lambda m: None)


def test_evaluate_side_by_side_gives_tukey_for_every_pair(run):
  config, workdir = run
  config.evaluate.augmentation_study = False
  config.evaluate.memorisation.enabled = False
  config.sample.symmetric_flip = True   # the command line's sample block reaches both runs
  try:
    out = modes.evaluate(config, workdir, epoch=2, compare_workdir=workdir, compare_epoch=1,
                         log=lambda m: None)
  finally:
    config.sample.symmetric_flip = False
  report = json.load(open(os.path.join(out, "report.json")))
  assert [r["symmetric_flip"] for r in report["runs"]] == [True, True]
  assert "flipped left/right at random (sample.symmetric_flip)" in open(os.path.join(out, "report.md")).read()
  assert report["memorisation"] == {} and not any(f.startswith("memorisation") for f in os.listdir(out))
  assert [r["label"] for r in report["runs"]] == ["run@2", "run@1"]
  c = report["paper"]["per_pattern"]["unilateral"]["lr"]
  assert set(c["dunnett_p"]) == {"run@2", "run@1"}
  assert set(c["tukey_p"]) == {"real vs run@2", "real vs run@1", "run@2 vs run@1"}


def test_augmentation_study_trains_every_arm_for_its_own_steps(run):
  config, workdir = run
  config = config.copy_and_resolve_references()
  config.evaluate.augmentation_study = True   # an earlier test of the module turns it off
  config.evaluate.augmentation_steps = 30   # not the reference's 20
  config.evaluate.augmentation_repeats = 1
  config.evaluate.memorisation.enabled = False
  logs = []
  out = modes.evaluate(config, workdir, epoch=1, overwrite=True, log=logs.append)
  aug = json.load(open(os.path.join(out, "report.json")))["augmentation"]["run"]
  assert {arm["steps"] for arm in aug.values()} == {30}
  # The real-only arm cannot be the 20-step reference: it is trained anew, at 30 steps.
  for arm in ("real only", "synthetic only", "real + synthetic"):
    assert any(f"training on {arm} (" in m and "30 steps, seed 0" in m for m in logs), arm
  assert sum("classifier: 30 steps" in m for m in logs) == 3
  assert "trained for 30 steps with 1 seed(s)" in open(os.path.join(out, "report.md")).read()


@pytest.mark.parametrize("field", ["augmentation_repeats", "augmentation_steps"])
def test_bad_augmentation_settings_are_refused_before_any_work(run, field):
  config, workdir = run
  config = config.copy_and_resolve_references()
  config.evaluate[field] = 0
  logs = []
  out = os.path.join(workdir, "evaluation", "epoch_0002_seed0")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "kept.txt"), "w") as f:
    f.write("an earlier report")
  with pytest.raises(errors.ConfigError, match=f"evaluate.{field}"):
    modes.evaluate(config, workdir, epoch=2, overwrite=True, log=logs.append)
  assert not any("generating" in m for m in logs)
  assert open(os.path.join(out, "kept.txt")).read() == "an earlier report"


def test_augment_carries_the_card_of_the_evaluated_epoch(run, tmp_path):
  config, workdir = run
  config = config.copy_and_resolve_references()
  config.evaluate.augmentation_study = False
  evaluated = modes.evaluate(config, workdir, epoch=1, overwrite=True, log=lambda m: None)
  out = modes.augment(config, workdir, str(tmp_path / "set"), epoch=1, per_condition=4, log=lambda m: None)
  card = json.load(open(os.path.join(out, "card.json")))
  of_report = json.load(open(os.path.join(evaluated, "card.json")))
  assert card["evaluation"]["report"] == os.path.abspath(os.path.join(evaluated, "report.json"))
  for section in ("fidelity", "memorisation", "training_data", "recipe"):
    assert card[section] == of_report[section], section
  assert card["data_set"]["counts"]["BG/normal"] == {"real": 3, "synthetic": 1}
  assert "## This data set" in open(os.path.join(out, "card.md")).read()


def test_missing_epoch_is_a_user_error(run):
  config, workdir = run
  with pytest.raises(errors.UserError, match="epoch 7"):
    modes.evaluate(config, workdir, epoch=7, log=lambda m: None)


def test_launch_reports_a_workdir_without_a_run(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  for mode in ("evaluate", "select"):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), f"--mode={mode}",
                        f"--workdir={tmp_path}"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "config.json" in r.stderr and "Traceback" not in r.stderr
