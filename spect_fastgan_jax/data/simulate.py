"""Simulated 123I-IMP brain perfusion SPECT slices: the embedded default data set.

Per subject: true perfusion on the MNI phantom (anatomy.py) with the subject's
grey:white ratio, lobe factors and defects -> the scanner's 3-D Gaussian blur ->
the subject's shape (random affine + smooth deformation) -> point samples on a
64 x 64 grid of 3.5-4.4 mm pixels at three adjacent axial slices -> Poisson counts.
docs/data.md lists the physics and its sources.

The blur is applied in MNI space, before the subject's warp, with its width
divided by the subject's scale: exact for the affine part, and for the smooth
deformation (a few mm over 80-160 mm wavelengths, i.e. local scale changes of
about 10%) the effective FWHM differs from the drawn one by less than the
10-14 mm range itself. In exchange the blur runs once per slab on a fixed grid
instead of on a warped grid, which keeps the full set well under a minute.

Every random draw of subject i of a pattern comes from its own generator seeded
with (seed, pattern, i), and every level's slice position is drawn whether or not
the level is kept, so a subject's images do not depend on the other subjects.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from scipy import ndimage

from spect_fastgan_jax import conditions
from spect_fastgan_jax.data import anatomy
from spect_fastgan_jax.data.dataset import MATRIX, SliceDataset
from spect_fastgan_jax.errors import ConfigError

# Bumped whenever the simulator's output for the same parameters changes, so that
# stale cached sets are not reused.
SIMULATOR_VERSION = 1

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
# Scanner field-of-view centre and the centre of the subject's affine, MNI mm: the
# middle of the brain's bounding box, so that a 64 x 3.5 mm field holds every head.
BRAIN_CENTRE_MM = np.array([0.0, -17.0, 0.0], np.float32)
_DEFORMATION_MODES = 3
_PATTERN_CODE = {p: i for i, p in enumerate(conditions.PATTERNS)}


@dataclasses.dataclass(frozen=True)
class Subject:
  """One simulated subject: what it shows and which of its slices are kept.

  territory: (territory of the right hemisphere's defect, of the left's); '' for none.
  """
  subject: str
  pattern: str
  side: str
  levels: tuple[str, ...]
  territory: tuple[str, str]
  number: int


def count_plan(sim) -> dict[tuple[str, str], int]:
  """Slices per (level, pattern) from `config.data.simulation.counts` (Table 1 by default)."""
  plan = {}
  for level in conditions.LEVELS:
    for pattern in conditions.PATTERNS:
      key = f"{level}_{pattern}"
      n = int(sim.counts.get(key, 0))
      if n < 0:
        raise ConfigError(f"config field data.simulation.counts.{key} is negative ({n})")
      plan[(level, pattern)] = n
  unknown = set(sim.counts.keys()) - {f"{l}_{p}" for l, p in plan}
  if unknown:
    raise ConfigError(f"config field data.simulation.counts has unknown key(s) {sorted(unknown)}; "
                     "keys are LEVEL_pattern, e.g. BG_unilateral")
  return plan


def _draw_territory(rng: np.random.Generator, sim) -> str:
  names = sorted(sim.territory_weights.keys())
  weights = np.array([float(sim.territory_weights[n]) for n in names])
  return names[rng.choice(len(names), p=weights / weights.sum())]


def _visible(sim, territory: str, level: str) -> bool:
  return level in tuple(sim.territory_levels.get(territory, ()))


def plan_subjects(sim) -> list[Subject]:
  """Draws the subjects and assigns each the levels it contributes a slice to.

  Normals: as many subjects as the largest per-level count; each level takes a
  random subset. Defects: subjects are drawn one after another (territory per
  defective hemisphere) and give a slice to every level that still needs one and
  at which all their defects are visible (config `territory_levels`), so every
  defect slice shows its defect. Unilateral sides alternate, so left and right
  are equally frequent.
  """
  counts = count_plan(sim)
  rng = np.random.default_rng([int(sim.seed), 7919])
  subjects = []
  n_normal = max(counts[(l, "normal")] for l in conditions.LEVELS)
  chosen = {l: set(rng.permutation(n_normal)[:counts[(l, "normal")]].tolist())
            for l in conditions.LEVELS}
  for i in range(n_normal):
    levels = tuple(l for l in conditions.LEVELS if i in chosen[l])
    subjects.append(Subject(f"sim-normal-{i:04d}", "normal", "none", levels, ("", ""), i))

  for pattern in ("unilateral", "bilateral"):
    need = {l: counts[(l, pattern)] for l in conditions.LEVELS}
    for level, n in need.items():
      if n and not any(_visible(sim, t, level) for t, w in sim.territory_weights.items() if w > 0):
        raise ConfigError(f"{n} {pattern} slices are asked for at level {level}, but no territory "
                         "with a positive weight is visible there (config field "
                         "data.simulation.territory_levels)")
    side_offset = int(rng.integers(2))
    draws = 0
    while any(need.values()):
      draws += 1
      if draws > 100 * (sum(counts.values()) + 1):
        raise ConfigError(f"cannot place the {pattern} slices: territory_weights make the "
                         "visible territories too rare")
      n = len([s for s in subjects if s.pattern == pattern])
      if pattern == "unilateral":
        side = ("left", "right")[(n + side_offset) % 2]
        t = _draw_territory(rng, sim)
        territory = (t, "") if side == "right" else ("", t)
      else:
        side = "none"
        territory = (_draw_territory(rng, sim), _draw_territory(rng, sim))
      levels = tuple(l for l in conditions.LEVELS if need[l] > 0
                     and all(_visible(sim, t, l) for t in territory if t))
      if not levels:
        continue
      for l in levels:
        need[l] -= 1
      subjects.append(Subject(f"sim-{pattern}-{n:04d}", pattern, side, levels, territory, n))
  return subjects


def _uniform(rng, pair, size=None):
  lo, hi = (float(v) for v in pair)
  return rng.uniform(lo, hi, size)


def _rotation_z(deg: float) -> np.ndarray:
  a = np.deg2rad(deg)
  return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _lobe_table(rng, sim) -> np.ndarray:
  """[256] perfusion factor per phantom label (lobe * 2 + hemisphere; 255 outside)."""
  n = len(anatomy.LOBES)
  v = float(sim.lobe_variation)
  lobe = 1.0 + rng.uniform(-v, v, n)
  lobe[anatomy.LOBES.index("cerebellum")] *= _uniform(rng, sim.cerebellum_factor)
  per_side = lobe[:, None] * (1.0 + float(sim.hemisphere_asymmetry) * rng.standard_normal((n, 2)))
  table = np.zeros(256, np.float32)
  table[:2 * n] = per_side.reshape(-1)
  return table


def _deformation(rel: np.ndarray, freqs: np.ndarray, phases: np.ndarray, amps: np.ndarray,
                 asymmetry: float) -> np.ndarray:
  """Smooth random displacement (MNI mm) at points rel [3, P] (scanner mm from the
  head's centre): a few plane waves per axis, made mostly mirror-symmetric.

  Why symmetric: a field that lifted one hemisphere by 2 mm and lowered the other
  would cut the two at different anatomical heights, which at the cerebellar and
  high-cortex levels (where the cross-section changes fast with z) spreads the
  normals' left/right ratio to +/- 0.08, far beyond the +/- 0.03 of real normal
  databases. So the field is split into its mirror-symmetric part (which keeps
  the midline on the image's midline) and the rest, which is scaled by `asymmetry`.
  """
  def waves(points):
    return np.einsum("am,amp->ap", amps, np.cos((freqs @ points)[None] + phases[:, :, None]))

  mirrored = rel * np.array([-1.0, 1.0, 1.0])[:, None]
  full = waves(rel)
  # Mirror symmetry: d_x(-x) = -d_x(x), d_y(-x) = d_y(x), d_z(-x) = d_z(x).
  sym = 0.5 * (full + np.array([-1.0, 1.0, 1.0])[:, None] * waves(mirrored))
  return sym + asymmetry * (full - sym)


def simulate_subject(phantom: anatomy.Phantom, sim, subject: Subject,
                     noiseless: bool = False) -> dict[str, np.ndarray]:
  """Images one subject.

  Args:
    noiseless: return the expected counts (the Poisson means) instead of counts.

  Returns:
    {level: float32 [3, 64, 64]} counts of the slices below, at and above the
    selected slice, in the orientation of dataset.py (row 0 anterior, column 0
    the patient's right), for each level in subject.levels.
  """
  rng = np.random.default_rng([int(sim.seed), _PATTERN_CODE[subject.pattern], subject.number])
  pixel = _uniform(rng, sim.pixel_mm)
  fwhm = _uniform(rng, sim.fwhm_mm)
  noise = _uniform(rng, sim.noise_gm)
  a_wm = 1.0 / _uniform(rng, sim.gm_wm_ratio)
  a_deep = _uniform(rng, sim.deep_grey_factor)
  table = _lobe_table(rng, sim)
  # Drawn for both hemispheres whatever the territories, so that the same subject
  # number draws the same anatomy with and without a defect.
  severity = _uniform(rng, sim.defect_severity, 2)

  scale = 1.0 + rng.uniform(-sim.scale, sim.scale, 3)
  rotation = _rotation_z(rng.uniform(-sim.rotation_deg, sim.rotation_deg))
  shift_range = np.asarray(sim.shift_mm, float)
  shift = rng.uniform(-shift_range, shift_range)
  # Scanner -> MNI: undo shift, rotation and scale about the brain centre.
  to_mni = np.diag(1.0 / scale) @ rotation.T
  wavelengths = _uniform(rng, sim.deformation_wavelength_mm, _DEFORMATION_MODES)
  directions = rng.standard_normal((_DEFORMATION_MODES, 3))
  freqs = 2 * np.pi * directions / np.linalg.norm(directions, axis=1, keepdims=True) \
      / wavelengths[:, None]
  phases = rng.uniform(0, 2 * np.pi, (3, _DEFORMATION_MODES))
  # Amplitudes with E[RMS] = deformation_mm per axis (a cosine's RMS is 1/sqrt 2).
  amps = float(sim.deformation_mm) * np.sqrt(2.0 / _DEFORMATION_MODES) \
      * rng.standard_normal((3, _DEFORMATION_MODES))
  level_z = {l: _uniform(rng, sim.level_z_mm[l]) for l in conditions.LEVELS}

  # Pixel centres of the three slices, scanner mm: column 0 at the patient's right
  # (+x in MNI), row 0 anterior (+y).
  c = BRAIN_CENTRE_MM
  offsets = (np.arange(MATRIX) - (MATRIX - 1) / 2.0) * pixel
  rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
  sigma_mm = fwhm * FWHM_TO_SIGMA / scale  # the scanner's blur, measured in MNI mm
  sigma_vox = sigma_mm / phantom.spacing
  clean = {}
  for level in subject.levels:
    z_centre = scale[2] * (level_z[level] - c[2]) + c[2] + shift[2]
    pts = np.stack(np.broadcast_arrays(c[0] - cols[None], c[1] - rows[None],
                                       z_centre + pixel * np.array([-1.0, 0.0, 1.0])[:, None, None]))
    pts = pts.reshape(3, -1)
    rel = pts - (c + shift)[:, None]
    mni = to_mni @ rel + c[:, None]
    mni += _deformation(rel, freqs, phases, amps, float(sim.deformation_asymmetry))
    idx = (mni - phantom.origin[:, None]) / phantom.spacing

    # The slab of the phantom that the blur carries into these slices.
    reach = 3.0 * sigma_vox[2] + 2
    k0 = max(int(np.floor(idx[2].min() - reach)), 0)
    k1 = min(int(np.ceil(idx[2].max() + reach)) + 1, phantom.shape[2])
    if k1 - k0 < 2:
      raise ConfigError(f"level {level} at MNI z {level_z[level]:.1f} mm is outside the phantom")
    sl = np.s_[:, :, k0:k1]
    tissue = phantom.cortex[sl] + a_wm * phantom.white[sl] + a_deep * phantom.deep[sl]
    activity = tissue * table[phantom.label[sl]]
    for hemisphere, (t, s) in enumerate(zip(subject.territory, severity)):
      if t:
        weight = phantom.left[sl] if hemisphere == 1 else 1.0 - phantom.left[sl]
        # Deep nuclei hang on perforators that branch off before the usual site of
        # a cortical-branch stenosis, so they lose only part of the territory's flow.
        weight = weight * (1.0 - float(sim.defect_deep_sparing) * phantom.deep_mask[sl])
        activity *= 1.0 - s * phantom.territory[anatomy.TERRITORIES.index(t)][sl] * weight
    blurred = ndimage.gaussian_filter(activity, sigma_vox, mode="constant", truncate=3.0)
    idx[2] -= k0
    img = ndimage.map_coordinates(blurred, idx, order=1, mode="constant", cval=0.0)
    clean[level] = np.clip(img.reshape(3, MATRIX, MATRIX), 0.0, None)

  # One count scale per subject (dose x time), set so that the Poisson noise in
  # grey matter (pixels above half the slice maximum) has RMS `noise`.
  inv = [1.0 / v[1][v[1] >= 0.5 * v[1].max()] for v in clean.values()]
  gain = float(np.mean(np.concatenate(inv))) / noise ** 2
  if noiseless:
    return {l: (gain * v).astype(np.float32) for l, v in clean.items()}
  return {l: rng.poisson(gain * v).astype(np.float32) for l, v in clean.items()}


def _assemble(subjects, results) -> SliceDataset:
  rows = [(s, l, r[l]) for s, r in zip(subjects, results) for l in s.levels]
  return SliceDataset(
      slices=np.stack([img for _, _, img in rows]).astype(np.float32),
      level=np.array([l for _, l, _ in rows]),
      pattern=np.array([s.pattern for s, _, _ in rows]),
      side=np.array([s.side for s, _, _ in rows]),
      subject=np.array([s.subject for s, _, _ in rows]))


def simulate(sim, log: Callable[[str], None] = print) -> SliceDataset:
  """Builds the whole simulated set from `config.data.simulation` (no cache).

  Returns:
    SliceDataset with sum(count_plan(sim).values()) slices, float32 [N, 3, 64, 64].
  """
  subjects = plan_subjects(sim)
  n_slices = sum(len(s.levels) for s in subjects)
  if n_slices == 0:
    raise ConfigError("config field data.simulation.counts asks for no slices at all")
  log(f"simulating {n_slices} slices of {len(subjects)} subjects")
  # One process: the whole default set takes about 10 s, less than starting worker
  # processes that would each import nilearn and rebuild the phantom.
  phantom = anatomy.load_phantom(float(sim.defect_margin_mm))
  results = [simulate_subject(phantom, sim, s) for s in subjects]
  return _assemble(subjects, results).validate("simulated data set")
