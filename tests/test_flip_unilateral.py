"""Config field augment.flip_unilateral: unilateral slices flip left/right in training,
in symmetric sampling and in the memorisation audit's reference, and data whose own
sides are uneven, or a side-conditioned run, is refused."""

import os

import jax
import numpy as np
import pytest

from conftest import toy_dataset
from spect_fastgan_jax import augment, conditions, errors, input_pipeline, models, sample, train
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.evaluation import memorisation, metrics, report_md, score
from test_memorisation import _data
from test_side_condition import sided_toy


def test_the_flipped_patterns_include_unilateral_only_when_asked():
  assert conditions.flip_patterns() == ("normal", "bilateral")
  assert conditions.flip_patterns(True) == ("normal", "bilateral", "unilateral")
  levels = ("CER", "BG", "COR")
  pattern = ["normal", "unilateral", "bilateral", "unilateral"]
  c = conditions.encode(levels, ["BG"] * 4, pattern)
  np.testing.assert_array_equal(conditions.flip_symmetric(c), [True, False, True, False])
  np.testing.assert_array_equal(conditions.flip_symmetric(c, False, True), [True, True, True, True])
  # A side-conditioned encoding never flips a unilateral (its side is in the label).
  sided = conditions.encode(levels, ["BG"] * 4, pattern, ["none", "left", "none", "right"], True)
  np.testing.assert_array_equal(conditions.flip_symmetric(sided, True, True), [True, False, True, False])
  ds = toy_dataset(2)
  plain = np.asarray(input_pipeline.device_data(ds, levels).flip_ok)
  both = np.asarray(input_pipeline.device_data(ds, levels, flip_unilateral=True).flip_ok)
  np.testing.assert_array_equal(plain, ds.pattern != "unilateral")
  assert both.all()


def test_augment_flips_unilateral_slices_only_with_the_field(tiny_config_a):
  ds = toy_dataset(8)
  levels = tiny_config_a.data.levels
  uni = np.flatnonzero(ds.pattern == "unilateral")
  for flag, expect_mirrors in ((False, False), (True, True)):
    data = input_pipeline.device_data(ds, levels, flip_unilateral=flag)
    mirrored = 0
    for seed in range(4):
      out = np.asarray(augment.augment(jax.random.PRNGKey(seed), data.slices[uni], data.flip_ok[uni],
                                       blend=False, max_shift=0))
      centre = np.asarray(data.slices[uni, 1])
      same = np.all(np.isclose(out, centre), axis=(1, 2))
      flipped = np.all(np.isclose(out, centre[:, :, ::-1]), axis=(1, 2)) & ~same
      assert (same | flipped).all()
      mirrored += int(flipped.sum())
    n = 4 * len(uni)
    assert (0.25 * n <= mirrored <= 0.75 * n) if expect_mirrors else mirrored == 0


def test_uneven_sides_and_a_side_conditioned_run_are_refused(tmp_path, tiny_config_a):
  # Even sides (half mirrored into left defects) pass, one count per subject.
  even = sided_toy(8)
  assert "12 of the 24 subjects" in augment.check_side_share(even.side, even.pattern, even.subject)
  assert "not checked" in augment.check_side_share(np.full(4, "none"), np.full(4, "unilateral"),
                                                   np.arange(4).astype(str))
  # 14 left of 40 subjects is within chance (P 0.08), though as 42 of 120 slices it is not.
  side = np.repeat(np.where(np.arange(40) < 14, "left", "right"), 3)
  subject = np.repeat(np.arange(40).astype(str), 3)
  assert "14 of the 40" in augment.check_side_share(side, np.full(120, "unilateral"), subject)
  # toy_dataset's defects are all on the right: a flip would teach an even split.
  config = tiny_config_a
  config.augment.flip_unilateral = True
  workdir = os.path.join(tmp_path, "run")
  with pytest.raises(errors.DataError, match=r"training subjects.*0 of the 24 subjects .* left .*"
                                             r"flip_unilateral=False"):
    train.train(config, workdir, toy_dataset(8), log=lambda m: None)
  assert not os.path.exists(workdir)
  # It flips unilateral slices besides the others: refused without augment.flip.
  config.augment.flip = False
  with pytest.raises(errors.ConfigError, match=r"augment\.flip_unilateral .*augment\.flip=True"):
    train.check_config(config)
  config.augment.flip = True
  config.data.condition_side = True
  with pytest.raises(errors.ConfigError, match=r"augment\.flip_unilateral .*side-conditioned"):
    train.check_config(config)


def test_training_gives_the_augmentation_the_unilateral_flip(tmp_path, tiny_config_a, monkeypatch):
  seen, said = [], []
  real = input_pipeline.device_data

  def spy(*args, **kwargs):
    data = real(*args, **kwargs)
    seen.append(np.asarray(data.flip_ok))
    raise KeyboardInterrupt   # stop before the compile: what reaches the augmentation is known
  monkeypatch.setattr(input_pipeline, "device_data", spy)
  ds = sided_toy(4)
  for flag in (False, True):
    tiny_config_a.augment.flip_unilateral = flag
    with pytest.raises(KeyboardInterrupt):
      train.train(tiny_config_a, os.path.join(tmp_path, str(flag)), ds, log=said.append)
  np.testing.assert_array_equal(seen[0], ds.pattern != "unilateral")
  assert seen[1].all()
  assert any("augment.flip_unilateral: 6 of the 12 subjects" in s for s in said)


def test_auto_flips_where_allowed_and_stands_down_where_not(tmp_path, tiny_config_a, monkeypatch):
  config = tiny_config_a
  config.augment.flip_unilateral = "auto"
  train.check_config(config)   # "auto" is valid, with a side-conditioned run too
  said = []
  # Even sides: on, said, and recorded beside the config as given.
  resolved, derived = augment.with_resolved_flip(config, False, sided_toy(4), said.append)
  assert resolved.augment.flip_unilateral is True and derived == {"augment.flip_unilateral": True}
  assert config.augment.flip_unilateral == "auto"
  assert said[-1].startswith("augment.flip_unilateral auto: on; 6 of the 12 subjects")
  # Uneven sides (toy_dataset's defects are all on the right): off, not refused.
  resolved, derived = augment.with_resolved_flip(config, False, toy_dataset(4), said.append)
  assert derived == {"augment.flip_unilateral": False}
  assert "auto: off" in said[-1] and "0 of the 12 subjects" in said[-1]
  # A side-conditioned run, and a run without augment.flip: off.
  assert augment.with_resolved_flip(config, True, sided_toy(4), said.append)[1] == {"augment.flip_unilateral": False}
  assert "side-conditioned" in said[-1]
  config.augment.flip = False
  assert augment.with_resolved_flip(config, False, sided_toy(4), said.append)[1] == {"augment.flip_unilateral": False}
  config.augment.flip = True
  # An unresolved "auto" is never read as a flag.
  with pytest.raises(ValueError, match="auto"):
    augment.flips_unilateral(config.augment)
  # The run's readers get the resolved value; a resume compares the value as given.
  run = str(tmp_path)
  workdir_lib.write_run_config(run, config, None, {"augment.flip_unilateral": True})
  assert workdir_lib.require_run_config(run).augment.flip_unilateral is True
  assert workdir_lib.read_run_config(run).augment.flip_unilateral == "auto"
  workdir_lib.check_resumable(workdir_lib.read_run_config(run), config)
  # Training reaches the augmentation with the resolved flip.
  seen = []

  def spy(*args, **kwargs):
    seen.append(kwargs.get("flip_unilateral", args[-1] if len(args) > 4 else None))
    raise KeyboardInterrupt
  monkeypatch.setattr(input_pipeline, "device_data", spy)
  for ds in (sided_toy(4), toy_dataset(4)):
    with pytest.raises(KeyboardInterrupt):
      train.train(config, os.path.join(tmp_path, str(len(seen))), ds, log=said.append)
  assert seen == [True, False]


def test_a_damaged_derived_record_is_named(tmp_path, tiny_config_a):
  run = str(tmp_path)
  workdir_lib.write_run_config(run, tiny_config_a, None, {"augment.no_such_field": 1})
  with pytest.raises(errors.RunError, match=r"config\.json.*augment\.no_such_field"):
    workdir_lib.require_run_config(run)
  # "auto" is only ever read resolved: a record without the resolved value is named.
  tiny_config_a.augment.flip_unilateral = "auto"
  workdir_lib.write_run_config(run, tiny_config_a, None, {})
  assert workdir_lib.read_run_config(run).augment.flip_unilateral == "auto"
  with pytest.raises(errors.RunError, match=r"config\.json.*flip_unilateral is 'auto'"):
    workdir_lib.require_run_config(run)
  workdir_lib.write_run_config(run, tiny_config_a, None, {"augment.flip_unilateral": False})
  assert workdir_lib.require_run_config(run).augment.flip_unilateral is False


def test_symmetric_sampling_mirrors_unilateral_images_where_training_flips_them(tiny_config_a):
  config = tiny_config_a
  g, _ = models.from_config(config.model)
  levels = config.data.levels
  n = 48
  cond = conditions.encode(levels, ["COR"] * n, ["unilateral"] * n)
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  g_vars = g.init({"params": jax.random.PRNGKey(1)}, np.zeros((n, config.model.z_dim), np.float32),
                  cond, keys, train=False)
  index = np.arange(n)
  draw = lambda **kw: np.asarray(sample.make_generate_fn(g, config.model.z_dim, **kw)(g_vars, cond, 0, index))
  plain = draw()
  np.testing.assert_array_equal(draw(symmetric_flip=True), plain)
  sym = draw(symmetric_flip=True, flip_unilateral=True)
  same = np.all(np.isclose(sym, plain, atol=1e-6), axis=(1, 2))
  mirrored = np.all(np.isclose(sym, plain[:, :, ::-1], atol=1e-6), axis=(1, 2)) & ~same
  assert (same | mirrored).all() and 12 <= mirrored.sum() <= n - 12
  # A run's config chooses it: sample.symmetric_flip with augment.flip_unilateral; and
  # sample.mirrored names the mirrored samples without drawing them.
  config.sample.symmetric_flip, config.augment.flip_unilateral = True, True
  np.testing.assert_array_equal(np.asarray(sample.generate_fn_of(g, config)(g_vars, cond, 0, index)), sym)
  np.testing.assert_array_equal(sample.mirrored(config, 0, index, ["unilateral"] * n), mirrored)
  config.augment.flip_unilateral = False
  assert not sample.mirrored(config, 0, index, ["unilateral"] * n).any()
  np.testing.assert_array_equal(sample.mirrored(config, 0, index, ["normal"] * n), mirrored)


def test_side_balance_gives_the_generators_own_share_where_sampling_mirrored():
  # A generator that puts every defect on the left (low columns bright, high dark),
  # half of its images mirrored by sampling: the set is even, the generator is not.
  n = 40
  img = np.ones((n, 64, 64), np.float32)
  img[:, 16:48, 34:60] = 0.5       # patient-left is the high columns (conftest.toy_dataset)
  mirrored = np.arange(n) % 2 == 0
  fake_images = np.where(mirrored[:, None, None], img[:, :, ::-1], img)
  level, pattern = np.full(n, "BG"), np.full(n, "unilateral")
  real = score.Group("real", np.concatenate([img, img[:, :, ::-1]]), np.full(2 * n, "BG"),
                     np.full(2 * n, "unilateral"), np.repeat(["left", "right"], n))
  fake = score.Group("fake", fake_images, level, pattern, mirrored=mirrored)
  pred = lambda g: {"side": np.eye(2)[(metrics.lr_ratio(g.images) >= 1).astype(int)]}
  b = score.side_balance(real, pred(real), fake, pred(fake))["all"]
  assert b["fake_left_share_by_lr"] == 0.5 and b["binomial_p"] > 0.5
  assert b["mirrored_share"] == 0.5 and b["generator_left_share_by_lr"] in (0.0, 1.0)
  assert b["generator_binomial_p_by_lr"] < 1e-6
  # Without mirrored images there is nothing to flip back.
  plain = score.side_balance(real, pred(real), score.Group("fake", img, level, pattern), pred(fake))["all"]
  assert "generator_left_share_by_lr" not in plain
  # report.md shows the generator's own share only where sampling mirrored.
  md = "\n".join(report_md.side_balance_md({"run": {"side_balance": {"all": b}}}, ["run"]))
  assert "the balance above is the coin's" in md and "| run | all | 0.50 | " in md
  md = "\n".join(report_md.side_balance_md({"run": {"side_balance": {"all": plain}}}, ["run"]))
  assert "coin" not in md and "| run | all | 40 | 0.50 |" in md


def test_the_audit_finds_mirrored_unilateral_copies_only_where_the_run_flips_them():
  train_set = _data(20, seed=1)
  uni = np.flatnonzero(train_set.pattern == "unilateral")
  mirrors = train_set.slices[uni, 1][:, :, ::-1] * 2.0
  level, pattern = train_set.level[uni], train_set.pattern[uni]
  share = {}
  for flag in (False, True):
    ref = memorisation.new_patient_reference(train_set, max_shift=2, flip=True, flip_unilateral=flag)
    near, dist = ref.near_copies(mirrors, level, pattern)
    share[flag] = near.mean()
    assert ref.describe()["flip_unilateral"] is flag
    if flag:
      assert np.all(dist < 1e-3) and "unilateral" in ref.describe()["rule"]
  assert share == {False: 0.0, True: 1.0}
  assert memorisation.shifts_and_flips(0, True, "unilateral", True) == [(0, False), (0, True)]
  assert memorisation.shifts_and_flips(0, True, "unilateral") == [(0, False)]
  assert memorisation.shifts_and_flips(0, False, "unilateral", True) == [(0, False)]

