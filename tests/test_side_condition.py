"""Side conditioning (config field data.condition_side): the encoding, sampling with a
side, refusals, and the tiny end-to-end path (train, sample, evaluate, augment)."""

import csv
import json
import os
import re

import numpy as np
import pytest

from conftest import ROOT, toy_dataset
from spect_fastgan_jax import Sampler, conditions, errors, input_pipeline, modes, sample, train
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data import manifest
from test_augmented_set import _config, fake_run


def sided_toy(n_per_condition=4):
  """toy_dataset with every other unilateral slice mirrored into a left-sided defect."""
  ds = toy_dataset(n_per_condition)
  slices, side = ds.slices.copy(), ds.side.copy()
  uni = np.flatnonzero(ds.pattern == "unilateral")[::2]
  slices[uni] = slices[uni][..., ::-1]
  side[uni] = "left"
  return type(ds)(slices=slices, level=ds.level, pattern=ds.pattern, side=side, subject=ds.subject)


def test_the_encoding_splits_unilateral_by_side_and_is_opt_in():
  levels = ("CER", "BG", "COR")
  assert conditions.condition_dim(levels) == 6 and conditions.condition_dim(("COR",)) == 3
  assert conditions.condition_dim(levels, True) == 7 and conditions.condition_dim(("COR",), True) == 4
  assert conditions.condition_names(("COR",), True) == ("normal", "unilateral-left", "unilateral-right",
                                                        "bilateral")
  lv, pt, sd = ["BG", "BG", "COR", "CER"], ["unilateral", "unilateral", "normal", "bilateral"], \
      ["left", "right", "none", "none"]
  c = conditions.encode(levels, lv, pt, sd, True)
  np.testing.assert_array_equal(c, [[0, 1, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 1, 0],
                                    [0, 0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 1]])
  # Without the field the side is ignored: the paper's encoding, whatever the labels say.
  np.testing.assert_array_equal(conditions.encode(levels, lv, pt, sd), conditions.encode(levels, lv, pt))
  np.testing.assert_array_equal(conditions.flip_symmetric(c, True), [False, False, True, True])
  with pytest.raises(errors.ConditionError, match="without a side"):
    conditions.encode(levels, ["BG"], ["unilateral"], ["none"], True)
  with pytest.raises(errors.ConfigError, match="data.condition_side"):
    conditions.check_condition_side("yes")


def test_a_side_conditioned_run_on_unilaterals_without_a_side_is_refused_writing_nothing(tmp_path):
  config = _config(tmp_path / "unused.npz")
  config.data.condition_side = True
  config.data.holdout_fraction = 0.0
  workdir = tmp_path / "run"
  ds = toy_dataset(2)
  no_side = type(ds)(slices=ds.slices, level=ds.level, pattern=ds.pattern, side=np.full(len(ds), "none"),
                     subject=ds.subject)
  with pytest.raises(errors.DataError, match="cannot train a side-conditioned run: .*without a side"):
    train.train(config, str(workdir), no_side, log=lambda m: None)
  assert not workdir.exists()


def test_slots_draw_both_sides_in_turn_or_the_one_asked():
  pt = ["normal", "unilateral", "unilateral", "bilateral", "unilateral"]
  assert conditions.slot_sides(pt).tolist() == ["none", "left", "right", "none", "left"]
  assert conditions.slot_sides(pt, "right").tolist() == ["none", "right", "right", "none", "right"]


def test_training_data_encodes_sides_and_refuses_unilaterals_without_one():
  ds = sided_toy(2)
  data = input_pipeline.device_data(ds, ("CER", "BG", "COR"), 1.0, condition_side=True)
  cond = np.asarray(data.cond)
  assert cond.shape == (len(ds), 7)
  left = (ds.pattern == "unilateral") & (ds.side == "left")
  assert (cond[left, 4] == 1).all() and (cond[~left, 4] == 0).all()
  # The balance counts unilateral left and right as two conditions of the vector: each
  # side of BG/unilateral is drawn as often as BG/normal.
  w = np.asarray(data.weight)
  bg = ds.level == "BG"
  assert np.isclose(w[bg & left].sum(), w[bg & (ds.pattern == "normal")].sum())
  no_side = np.where(ds.pattern == "unilateral", "none", ds.side)
  with pytest.raises(errors.DataError, match="without a side"):
    input_pipeline.device_data(type(ds)(slices=ds.slices, level=ds.level, pattern=ds.pattern,
                                        side=no_side, subject=ds.subject),
                               ("CER", "BG", "COR"), condition_side=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two fake runs (random weights) on a toy set with both sides: with and without side
  conditioning."""
  tmp = tmp_path_factory.mktemp("side")
  npz = tmp / "toy.npz"
  sided_toy(3).save(npz)
  out = {}
  for sided in (True, False):
    config = _config(npz)
    config.data.condition_side = sided
    workdir = str(tmp / ("sided" if sided else "plain"))
    fake_run(workdir, config)
    out[sided] = workdir
  return out, tmp


def test_the_sampler_draws_the_side_asked_and_refuses_what_it_cannot(runs):
  (paths, _) = runs
  sampler = Sampler.load(paths[True], batch_size=8)
  assert sampler.condition_side
  left = sampler.generate("BG", "unilateral", n=4, side="left")
  right = sampler.generate("BG", "unilateral", n=4, side="right")
  assert left.shape == (4, 64, 64) and not np.array_equal(left, right)
  np.testing.assert_array_equal(sampler.generate("BG", "unilateral", index=[2], side="left")[0], left[2])
  for kwargs, says in (({"pattern": "unilateral"}, "give the side"),
                       ({"pattern": "normal", "side": "left"}, "only unilateral"),
                       ({"pattern": "unilateral", "side": "up"}, "unknown side 'up'")):
    with pytest.raises(errors.ConditionError, match=says):
      sampler.generate("BG", n=1, **kwargs)
  plain = Sampler.load(paths[False], batch_size=8)
  assert not plain.condition_side and plain.generate("BG", "unilateral", n=1).shape == (1, 64, 64)
  with pytest.raises(errors.ConditionError, match="not side-conditioned .*data.condition_side"):
    plain.generate("BG", "unilateral", n=1, side="left")


def test_the_docs_side_example_runs(runs):
  (paths, _) = runs
  text = open(os.path.join(ROOT, "docs", "api.md")).read()
  text = text[text.index("## The side of a unilateral defect"):]
  code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
  code, found = re.subn(r"^workdir = .*$", f"workdir = {paths[True]!r}", code, flags=re.M)
  assert found == 1
  scope = {}
  exec(compile(code, "docs/api.md", "exec"), scope)
  assert scope["left"].shape == (16, 64, 64) and not np.array_equal(scope["left"], scope["right"])


def test_mode_sample_takes_a_side_and_writes_each_side_apart(runs):
  (paths, _) = runs
  config = workdir_lib.require_run_config(paths[True])
  out = modes.sample(config, paths[True], 2, 4, False, log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    uni = z["pattern"] == "unilateral"
    assert sorted(set(z["side"][uni].tolist())) == ["left", "right"]
    assert set(z["side"][~uni].tolist()) == {"none"} and z["condition"].shape[1] == 7
    images, index, side, level = z["images"], z["index"], z["side"], z["level"]
  assert os.path.exists(os.path.join(out, "BG_unilateral_left.nii.gz"))
  assert json.load(open(os.path.join(out, "info.json")))["condition_side"] is True
  # Each image is the Sampler's of its side, seed and index.
  sampler = Sampler.load(paths[True], epoch=2, batch_size=int(config.sample.batch_size))
  k = np.flatnonzero(uni & (level == "COR"))[1]
  np.testing.assert_array_equal(sampler.generate("COR", "unilateral", index=[index[k]], side=side[k])[0],
                                images[k])
  out = modes.sample(config, paths[True], 1, 4, False, side="right", log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    assert set(z["side"][z["pattern"] == "unilateral"].tolist()) == {"right"}


def test_mode_sample_refuses_a_side_on_a_run_without_side_conditioning(runs):
  (paths, _) = runs
  config = workdir_lib.require_run_config(paths[False])
  with pytest.raises(errors.ConditionError, match="not side-conditioned"):
    modes.sample(config, paths[False], 1, 2, False, side="left", log=lambda m: None)
  with pytest.raises(errors.ConditionError, match="unknown side"):
    modes.sample(config, paths[True], 1, 2, False, side="middle", log=lambda m: None)
  assert not os.path.exists(sample.output_dir(paths[False], 1, 0))


def test_augment_of_a_side_conditioned_run_draws_the_sides(runs):
  (paths, tmp) = runs
  config = workdir_lib.require_run_config(paths[True])
  config.evaluate = _config("x").evaluate
  out = modes.augment(config, paths[True], str(tmp / "set"), epoch=2, balance=True, log=lambda m: None)
  with open(os.path.join(out, "manifest.csv"), newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["source"] == "synthetic" and r["pattern"] == "unilateral"]
  assert rows and {r["side"] for r in rows} == {"left", "right"}
  info = json.load(open(os.path.join(out, "info.json")))
  assert info["side"] == {"conditioned": True, "how": "drawn as asked (data.condition_side)"}
  sampler = Sampler.load(paths[True], epoch=2, batch_size=int(config.sample.batch_size))
  r = rows[0]
  ds = manifest.load_manifest(os.path.join(out, "manifest.csv"), log=lambda m: None)
  assert ds.side.tolist().count("left") >= 1
  image = sampler.generate(r["level"], "unilateral", index=[int(r["index"])], side=r["side"])[0]
  k = [i for i, p in enumerate(ds.subject) if p == r["subject"]][0]
  np.testing.assert_allclose(ds.slices[k, 1], image, atol=1e-6)
  assert "drawn with the side it is asked for" in open(os.path.join(out, "card.md")).read()


def test_a_tiny_side_conditioned_run_trains_samples_and_is_evaluated(tmp_path):
  npz = tmp_path / "toy.npz"
  sided_toy(3).save(npz)
  config = _config(npz)
  config.data.condition_side = True
  config.data.holdout_fraction = 0.0
  config.num_epochs = 1
  config.evaluate.augmentation_study = False
  config.evaluate.ms_ssim_pairs = 10
  workdir = str(tmp_path / "run")
  logs = []
  train.train(config, workdir, sided_toy(3), log=logs.append)
  assert any("unilateral-left" in m for m in logs)
  assert workdir_lib.read_run_config(workdir).data.condition_side is True
  out = modes.sample(config, workdir, 1, 2, False, side="left", log=lambda m: None)
  with np.load(os.path.join(out, "samples.npz")) as z:
    assert set(z["side"][z["pattern"] == "unilateral"].tolist()) == {"left"}
  out = modes.evaluate(config, workdir, epoch=1, log=lambda m: None)
  report = json.load(open(os.path.join(out, "report.json")))
  asked = report["runs_scores"]["run"]["side_correctness"]
  assert asked["n"] == 9 and 0 <= asked["share"] <= 1 and set(asked["per_level"]) == {"CER", "BG", "COR"}
  assert report["runs"][0]["condition_side"] is True
  judged = {c["name"]: c for c in report["criteria"]["run"]}
  assert judged["side_asked"]["values"] == {"left": asked["left"], "right": asked["right"]}
  assert "reads" in open(os.path.join(out, "report.md")).read() and "side asked for" in \
      open(os.path.join(out, "report.md")).read()
  card = json.load(open(os.path.join(out, "card.json")))
  assert card["side"]["correctness"]["share"] == asked["share"] and card["run"]["side_conditioning"]
