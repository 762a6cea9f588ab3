"""The simulated default data set: counts, determinism, physics, orientation, cache."""

import numpy as np
import pytest

from configs import data as data_config
from spect_fastgan_jax import conditions
from spect_fastgan_jax.data import anatomy, simulate, source, stats


def small_sim(per_condition=None, seed=0):
  """A simulation config with a few slices per condition (the default physics)."""
  sim = data_config.get_config().simulation
  sim.seed = seed
  for key in sim.counts.keys():
    sim.counts[key] = 0
  for key, n in (per_condition or {}).items():
    sim.counts[key] = n
  return sim


@pytest.fixture(scope="module")
def mixed():
  """Normals, unilateral and bilateral slices at BG and COR, unilateral at CER."""
  sim = small_sim({"CER_normal": 10, "CER_unilateral": 8, "BG_normal": 12, "BG_unilateral": 10,
                   "BG_bilateral": 12, "COR_normal": 12, "COR_unilateral": 10, "COR_bilateral": 12})
  return simulate.simulate(sim, log=lambda s: None)


def test_default_counts_are_table1():
  sim = data_config.get_config().simulation
  assert simulate.count_plan(sim) == conditions.TABLE1_COUNTS
  assert sum(simulate.count_plan(sim).values()) == 938


def test_default_plan_gives_table1_slices_with_balanced_sides():
  subjects = simulate.plan_subjects(data_config.get_config().simulation)
  got = {k: 0 for k in conditions.TABLE1_COUNTS}
  for s in subjects:
    for level in s.levels:
      got[(level, s.pattern)] += 1
  assert got == conditions.TABLE1_COUNTS
  assert len({s.subject for s in subjects}) == len(subjects)
  unilateral = [s for s in subjects if s.pattern == "unilateral"]
  lefts = sum(s.side == "left" for s in unilateral)
  assert abs(2 * lefts - len(unilateral)) <= 1
  assert all(s.side == "none" for s in subjects if s.pattern != "unilateral")
  assert all(all(s.territory) for s in subjects if s.pattern == "bilateral")


def test_defect_slices_only_at_levels_where_their_territory_is_visible():
  sim = data_config.get_config().simulation
  for s in simulate.plan_subjects(sim):
    for t in s.territory:
      if t:
        assert set(s.levels) <= set(sim.territory_levels[t]), s


def test_config_counts_reject_unknown_keys():
  sim = small_sim({"BG_normal": 1})
  sim.counts["BG_nromal"] = 2
  with pytest.raises(ValueError, match="BG_nromal"):
    simulate.count_plan(sim)


def test_same_seed_same_set_other_seed_other_set():
  counts = {"BG_normal": 2, "COR_unilateral": 2, "COR_bilateral": 1}
  a = simulate.simulate(small_sim(counts, seed=3), log=lambda s: None)
  b = simulate.simulate(small_sim(counts, seed=3), log=lambda s: None)
  c = simulate.simulate(small_sim(counts, seed=4), log=lambda s: None)
  for field in ("slices", "level", "pattern", "side", "subject"):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.array_equal(a.slices, c.slices)


def test_layout_and_labels(mixed):
  assert mixed.slices.shape == (len(mixed), 3, 64, 64)
  assert mixed.slices.dtype == np.float32
  assert mixed.counts()[("BG", "bilateral")] == 12
  assert mixed.counts()[("CER", "bilateral")] == 0
  # Counts are Poisson draws: whole numbers >= 0.
  assert np.all(mixed.slices >= 0) and np.all(mixed.slices == np.round(mixed.slices))
  # The three slices of a sample are different planes.
  assert np.all(np.abs(mixed.slices[:, 0] - mixed.slices[:, 2]).sum(axis=(1, 2)) > 0)


def test_normals_left_right_ratio_near_one(mixed):
  lr = stats.lr_ratio(mixed.slices[mixed.pattern == "normal", 1])
  assert abs(lr.mean() - 1.0) < 0.02
  assert np.all(np.abs(lr - 1.0) < 0.1)


def test_unilateral_recorded_side_is_lower(mixed):
  for level in ("BG", "COR"):
    m = (mixed.pattern == "unilateral") & (mixed.level == level)
    lr = stats.lr_ratio(mixed.slices[m, 1])
    side = mixed.side[m]
    assert set(side) == {"left", "right"}
    # LR = patient-left / patient-right counts: a left defect gives LR < 1.
    assert np.all(lr[side == "left"] < 1.0), lr[side == "left"]
    assert np.all(lr[side == "right"] > 1.0), lr[side == "right"]
  m = (mixed.pattern == "unilateral") & (mixed.level == "CER")
  lr = stats.lr_ratio(mixed.slices[m, 1])
  assert lr[mixed.side[m] == "left"].mean() < 0.98 < 1.02 < lr[mixed.side[m] == "right"].mean()


def test_bilateral_lower_mean_counts_than_normals(mixed):
  for level in ("BG", "COR"):
    mc = {p: stats.mean_counts(mixed.slices[(mixed.level == level) & (mixed.pattern == p), 1]).mean()
          for p in ("normal", "bilateral")}
    assert mc["bilateral"] < mc["normal"], (level, mc)


def test_same_subject_with_and_without_bilateral_defect():
  """Paired: identical anatomy and draws, only the defects differ."""
  sim = small_sim()
  phantom = anatomy.load_phantom(float(sim.defect_margin_mm))
  for level in ("BG", "COR"):
    healthy = simulate.Subject("s", "bilateral", "none", (level,), ("", ""), 5)
    sick = simulate.Subject("s", "bilateral", "none", (level,), ("MCA", "ACA"), 5)
    a = simulate.simulate_subject(phantom, sim, healthy, noiseless=True)[level][1]
    b = simulate.simulate_subject(phantom, sim, sick, noiseless=True)[level][1]
    assert stats.mean_counts(b[None])[0] < 0.95 * stats.mean_counts(a[None])[0]


def test_poisson_noise_in_grey_matter_is_7_to_15_percent():
  sim = small_sim()
  phantom = anatomy.load_phantom(float(sim.defect_margin_mm))
  rms = []
  for number in range(6):
    subject = simulate.Subject("s", "normal", "none", ("BG", "COR"), ("", ""), number)
    clean = simulate.simulate_subject(phantom, sim, subject, noiseless=True)
    noisy = simulate.simulate_subject(phantom, sim, subject)
    for level in subject.levels:
      c, n = clean[level][1], noisy[level][1]
      grey = c >= 0.5 * c.max()
      rms.append(np.sqrt(np.mean(((n[grey] - c[grey]) / c[grey]) ** 2)))
  assert 0.05 < min(rms) and max(rms) < 0.18, rms


def test_levels_show_their_anatomy():
  """CER: the hot cerebellum lies posterior; BG: the deep grey nuclei make the
  centre hot; COR: the head is narrower near the vertex than at the basal ganglia."""
  sim = small_sim()
  phantom = anatomy.load_phantom(float(sim.defect_margin_mm))
  for number in range(3):
    subject = simulate.Subject("s", "normal", "none", conditions.LEVELS, ("", ""), number)
    img = {l: v[1] / v[1].max() for l, v in
           simulate.simulate_subject(phantom, sim, subject, noiseless=True).items()}
    assert img["CER"][32:].sum() > 1.5 * img["CER"][:32].sum()
    assert img["BG"][26:38, 26:38].mean() > 0.6
    assert (img["COR"] > 0.3).sum() < 0.8 * (img["BG"] > 0.3).sum()


def test_territories_cover_their_levels():
  """Each (territory, level) of the default territory_levels holds at least 8% of a
  hemisphere's tissue at the level's middle height: the defect is visible there."""
  sim = data_config.get_config().simulation
  phantom = anatomy.load_phantom(float(sim.defect_margin_mm))
  tissue = phantom.cortex + phantom.white + phantom.deep
  for t, levels in sim.territory_levels.items():
    for level in levels:
      k = int(round(phantom.z_index(float(np.mean(sim.level_z_mm[level])))))
      right = tissue[:, :, k] * (1 - phantom.left[:, :, k])
      share = (phantom.territory[anatomy.TERRITORIES.index(t), :, :, k] * right).sum() / right.sum()
      assert share > 0.08, (t, level, share)


def test_simulated_set_is_cached_by_its_parameters(tmp_path):
  cfg = data_config.get_config()
  cfg.simulation = small_sim({"COR_normal": 2, "COR_unilateral": 2, "COR_bilateral": 2})
  cfg.cache_dir = str(tmp_path)
  logs = []
  first = source.simulated_set(cfg, log=logs.append)
  second = source.simulated_set(cfg, log=logs.append)
  assert any("simulating" in m for m in logs[:1]) and "loaded" in logs[-1]
  np.testing.assert_array_equal(first.slices, second.slices)
  key = source.simulation_key(cfg.simulation)
  cfg.simulation.fwhm_mm = (11.0, 11.0)
  assert source.simulation_key(cfg.simulation) != key


def _family_sim(family):
  data = data_config.get_config()
  return data_config.with_family(data, family).simulation


def _grey_noise(sim, phantom, number, level="BG"):
  subject = simulate.Subject("s", "normal", "none", (level,), ("", ""), number)
  clean = simulate.simulate_subject(phantom, sim, subject, noiseless=True)[level][1]
  noisy = simulate.simulate_subject(phantom, sim, subject)[level][1]
  grey = clean >= 0.5 * clean.max()
  return float(np.sqrt(np.mean(((noisy[grey] - clean[grey]) / clean[grey]) ** 2))), clean


def test_families_differ_as_their_descriptions_say():
  """Paired by subject (the same draws): 'sharp' is sharper and less noisy than the
  default, 'lowcount' blurrier and noisier with hotter deep nuclei, 'subtle' draws
  shallower defects, 'population' spreads head size and position more."""
  assert set(data_config.FAMILIES) >= {"default", "sharp", "lowcount", "subtle", "population"}
  assert _family_sim("default").to_dict() == data_config.get_config().simulation.to_dict()
  sims = {f: _family_sim(f) for f in ("default", "sharp", "lowcount", "subtle", "population")}
  phantom = anatomy.load_phantom(float(sims["default"].defect_margin_mm))
  edge = lambda img: float(np.mean(np.abs(np.diff(img / img.max(), axis=1))))
  for number in range(3):
    (n_def, c_def), (n_sharp, c_sharp), (n_low, c_low) = (
        _grey_noise(sims[f], phantom, number) for f in ("default", "sharp", "lowcount"))
    assert n_sharp < n_def < n_low, (n_sharp, n_def, n_low)
    assert edge(c_sharp) > edge(c_def) > edge(c_low)
    centre = lambda c: c[26:38, 26:38].mean() / c.max()  # striatum and thalamus
    assert centre(c_low) > centre(c_def)
  # A unilateral MCA defect, the same subject: subtle moves LR less than the default.
  deviation = {}
  for f in ("default", "subtle"):
    phantom_f = anatomy.load_phantom(float(sims[f].defect_margin_mm))
    subject = simulate.Subject("s", "unilateral", "left", ("COR",), ("", "MCA"), 2)
    img = simulate.simulate_subject(phantom_f, sims[f], subject, noiseless=True)["COR"][1]
    deviation[f] = abs(float(stats.lr_ratio(img[None])[0]) - 1.0)
  assert 0.02 < deviation["subtle"] < 0.7 * deviation["default"], deviation
  # Head size: brain area (pixels above 30 % of the maximum) over several normals.
  area = {f: [] for f in ("default", "population")}
  for f in area:
    for number in range(8):
      subject = simulate.Subject("s", "normal", "none", ("BG",), ("", ""), number)
      img = simulate.simulate_subject(phantom, sims[f], subject, noiseless=True)["BG"][1]
      area[f].append(int((img > 0.3 * img.max()).sum()))
  assert np.std(area["population"]) > 1.3 * np.std(area["default"]), area


# Every field of data.simulation, with a value other than the default's. Slice physics
# is checked on one subject's images, the plan fields on the subjects drawn; the
# families' test above checks the direction of the main ones.
SIMULATION_CHANGES = {
    "seed": 1, "level_z_mm": {"BG": (10.0, 12.0)}, "pixel_mm": (4.4, 4.4),
    "fwhm_mm": (16.0, 16.0), "noise_gm": (0.2, 0.2), "gm_wm_ratio": (5.0, 5.0),
    "deep_grey_factor": (1.3, 1.3), "cerebellum_factor": (1.3, 1.3), "lobe_variation": 0.2,
    "hemisphere_asymmetry": 0.05, "scale": 0.12, "rotation_deg": 10.0, "shift_mm": (3.0, 3.0, 3.0),
    "deformation_mm": 4.0, "deformation_asymmetry": 0.8, "deformation_wavelength_mm": (40.0, 80.0),
    "defect_severity": (0.6, 0.7), "defect_margin_mm": 8.0, "defect_deep_sparing": 0.0,
}
PLAN_CHANGES = {
    "counts": {"BG_unilateral": 7},
    "territory_weights": {"MCA": 0.2, "ACA": 0.6, "PCA": 0.2},
    "territory_levels": {"MCA": ("CER", "COR")},
}


def test_every_simulation_field_is_listed_below():
  assert set(SIMULATION_CHANGES) | set(PLAN_CHANGES) == set(data_config.get_config().simulation.keys())


def _changed(field, value):
  sim = data_config.get_config().simulation
  if isinstance(value, dict):
    sim[field].update(value)
  else:
    sim[field] = value
  return sim


@pytest.mark.parametrize("field", sorted(SIMULATION_CHANGES))
def test_each_simulation_field_changes_the_slices(field):
  subject = simulate.Subject("s", "unilateral", "left", ("CER", "BG", "COR"), ("", "MCA"), 2)

  def images(sim):
    out = simulate.simulate_subject(anatomy.load_phantom(float(sim.defect_margin_mm)), sim, subject)
    return np.stack([out[level] for level in subject.levels])

  default = images(data_config.get_config().simulation)
  np.testing.assert_array_equal(images(data_config.get_config().simulation), default)  # deterministic
  assert not np.allclose(images(_changed(field, SIMULATION_CHANGES[field])), default), field


@pytest.mark.parametrize("field", sorted(PLAN_CHANGES))
def test_each_plan_field_changes_the_subjects_drawn(field):
  def plan(sim):
    return [(s.pattern, s.side, s.levels, s.territory) for s in simulate.plan_subjects(sim)]

  assert plan(_changed(field, PLAN_CHANGES[field])) != plan(data_config.get_config().simulation), field
