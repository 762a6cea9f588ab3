"""Data fields of the config (`config.data`): where slices come from.

By default the simulated 123I-IMP perfusion SPECT set (built from the MNI ICBM152
grey/white-matter maps that ship with nilearn, cached on disk); a user's own
scans come in through `manifest` (CSV) or a ready `npz`. docs/data.md gives the
sources of the simulation's physics.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  data = ml_collections.ConfigDict()
  # Anatomical levels the run trains on. Dataset 'A': all three (6-dim condition);
  # dataset 'B': ('COR',) (3-dim condition, pattern only).
  data.levels = ("CER", "BG", "COR")
  # CSV manifest of the user's scans (path,slice,level,pattern[,side][,subject]).
  # Empty: use the simulated default set.
  data.manifest = ""
  # A ready dataset.npz (from --mode=simulate or an earlier manifest). Empty: none.
  # Takes precedence over `manifest`.
  data.npz = ""
  # Where the simulated set is cached, keyed by its parameters. Empty: ~/.cache/spect_fastgan_jax.
  data.cache_dir = ""
  # Volumes whose in-plane matrix is not 64 x 64 are resampled to it (and the log says so);
  # False refuses them instead.
  data.resample_inplane = True
  # Parallel volume reads of the manifest pipeline (grain worker threads).
  data.read_workers = 4
  # How often training draws each condition: a condition with n slices comes up in
  # proportion to n ** (1 - condition_balance). 0 (paper): as often as the data has it,
  # each slice once per epoch; 1: every condition equally often (draws with replacement).
  data.condition_balance = 0.0
  # Share of subjects held out of GAN training, drawn per pattern (a subject's slices all
  # go one way): the GAN never sees them, and --mode=evaluate tests its classifier, the
  # utility study and the memorisation audit on exactly them (<workdir>/subjects.json
  # records both lists). 0: train on every subject (the paper).
  data.holdout_fraction = 0.0
  data.holdout_seed = 0              # which subjects are held out (and which limit_subjects keeps)
  # Scarcity on purpose: keep only k training subjects' slices of a condition, e.g.
  # "BG/bilateral:10" or "BG/bilateral:10,COR/unilateral:20" (the others' slices of that
  # condition are dropped; their other slices and the held-out subjects stay). The GAN
  # and every classifier then see the same scarce real data (docs/utility.md). "": none.
  data.limit_subjects = ""
  # Condition on the side of a unilateral defect: the pattern block of the condition
  # vector becomes (normal, unilateral-left, unilateral-right, bilateral), 7 dims for
  # dataset 'A', 4 for 'B', and sampling takes a side (--mode=sample --side=left,
  # Sampler.generate(..., side="left")). Every unilateral training slice needs a side.
  # False (paper): the 6- and 3-dim encodings of Table 2, no side.
  data.condition_side = False

  # Parameters of the simulated set (spect_fastgan_jax/data/simulate.py). Every field
  # enters the cache key; (lo, hi) pairs are uniform ranges drawn per subject.
  sim = data.simulation = ml_collections.ConfigDict()
  sim.seed = 0                       # one seed drives every draw; same seed, same set
  # Slices per (level, pattern); default the paper's Table 1 (938 slices).
  sim.counts = ml_collections.ConfigDict({
      "CER_normal": 248, "CER_unilateral": 66, "CER_bilateral": 0,
      "BG_normal": 174, "BG_unilateral": 116, "BG_bilateral": 44,
      "COR_normal": 129, "COR_unilateral": 109, "COR_bilateral": 52,
  })
  # MNI z (mm) of the selected slice per level; the draw is the per-subject jitter.
  sim.level_z_mm = ml_collections.ConfigDict({
      "CER": (-40.0, -30.0),         # cerebellum and inferior temporal lobes
      "BG": (0.0, 8.0),              # striatum and thalamus
      "COR": (50.0, 60.0),           # high convexity cortex / centrum semiovale
  })
  # --- Scanner ---
  # Pixel size of the 64 x 64 matrix; slice spacing = pixel size (isotropic voxels).
  # One scanner protocol gives one pixel size (as in the paper); widen the range, e.g.
  # (3.5, 4.4), to mimic data pooled from several protocols.
  sim.pixel_mm = (4.0, 4.0)
  sim.fwhm_mm = (10.0, 14.0)         # reconstructed resolution, 3-D Gaussian
  sim.noise_gm = (0.07, 0.15)        # Poisson RMS noise relative to the grey-matter mean
  # --- True perfusion (relative to cortical grey matter = 1) ---
  sim.gm_wm_ratio = (2.5, 4.0)       # grey : white matter perfusion
  sim.deep_grey_factor = (1.05, 1.2)  # striatum, pallidum, thalamus over cortex
  sim.cerebellum_factor = (1.05, 1.2)  # cerebellum over cerebral cortex
  sim.lobe_variation = 0.07          # each lobe's factor in 1 +/- this (both hemispheres)
  sim.hemisphere_asymmetry = 0.01    # SD of an extra per-lobe, per-hemisphere factor
  # --- Subject shape ---
  sim.scale = 0.06                   # per-axis scale in 1 +/- this
  # In-plane (axial) rotation in +/- this. 4, not 5: at the cerebellar level the hot
  # cerebellum lies 4 cm behind the rotation centre, so each degree moves it sideways
  # and +/- 5 degrees alone spreads the normals' left/right ratio to +/- 0.04 there.
  sim.rotation_deg = 4.0
  # Position of the head in the field of view, +/- (x, y, z) mm. Left-right only 0.5 mm:
  # reorientation centres the midline, and each mm moves about 1.5% of the counts
  # between the image halves, i.e. into the left/right ratio.
  sim.shift_mm = (0.5, 3.0, 3.0)
  sim.deformation_mm = 2.0           # RMS of the smooth random displacement per axis
  sim.deformation_asymmetry = 0.2    # share of its non-mirror-symmetric part that is kept
  sim.deformation_wavelength_mm = (80.0, 160.0)  # its spatial wavelengths
  # --- Defects ---
  sim.defect_severity = (0.15, 0.5)  # fractional perfusion loss in the territory
  sim.defect_margin_mm = 4.0         # sigmoid edge of a territory before the blur
  sim.defect_deep_sparing = 0.5      # share of the loss that the deep grey nuclei are spared
  # Which territory a defect takes (relative weights; MCA is the common stroke territory).
  sim.territory_weights = ml_collections.ConfigDict({"MCA": 0.6, "ACA": 0.2, "PCA": 0.2})
  # Levels at which each territory is visible (a defect slice always shows its defect).
  sim.territory_levels = ml_collections.ConfigDict({
      "MCA": ("CER", "BG", "COR"), "ACA": ("BG", "COR"), "PCA": ("BG",),
  })
  return data


# Families of simulated data that differ as sites, scanners and populations differ
# (docs/data.md, "Families"). Each names the simulation fields it changes from the
# values above; a config takes one as a variant: --config=configs/dataset_a.py:cpu+lowcount.
# 'default' is the set above. The recipe is measured on every family (docs/fidelity.md).
FAMILIES = {
    "default": ("123I-IMP on a LEHR dual-head camera, the paper's kind of data", {}),
    "sharp": ("a high-resolution, high-count system (resolution recovery, long acquisition) "
              "and more grey-to-white contrast", {
                  "fwhm_mm": (7.0, 10.0), "noise_gm": (0.04, 0.08), "gm_wm_ratio": (3.0, 4.5)}),
    "lowcount": ("an older camera and a short acquisition: blurred, noisy, flat grey-to-white "
                 "contrast, with hot deep nuclei and cerebellum (a tracer that favours them)", {
                     "fwhm_mm": (14.0, 18.0), "noise_gm": (0.15, 0.25), "gm_wm_ratio": (2.0, 3.0),
                     "deep_grey_factor": (1.15, 1.35), "cerebellum_factor": (1.15, 1.35)}),
    "subtle": ("milder, wider-edged defects spread evenly over the three territories", {
        "defect_severity": (0.1, 0.3), "defect_margin_mm": 8.0, "defect_deep_sparing": 0.8,
        "territory_weights": {"MCA": 1.0 / 3, "ACA": 1.0 / 3, "PCA": 1.0 / 3}}),
    "population": ("another population and positioning: larger spread of head size, tilt, "
                   "position and shape, pixel sizes pooled from two protocols", {
                       "scale": 0.1, "rotation_deg": 7.0, "shift_mm": (1.5, 6.0, 5.0),
                       "deformation_mm": 3.5, "deformation_asymmetry": 0.35,
                       "lobe_variation": 0.1, "hemisphere_asymmetry": 0.02,
                       "pixel_mm": (3.6, 4.4)}),
}


def with_family(data: ml_collections.ConfigDict, family: str) -> ml_collections.ConfigDict:
  """`data` with the simulation fields of `family` (a key of FAMILIES) set."""
  for field, value in FAMILIES[family][1].items():
    if isinstance(value, dict):
      data.simulation[field].update(value)
    else:
      data.simulation[field] = value
  return data
