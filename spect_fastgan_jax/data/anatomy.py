"""The digital brain the simulator images: tissue, lobes, deep nuclei and arterial
territories on a 2 mm grid in MNI space.

Tissue comes from a real brain: the MNI ICBM152 2009 (symmetric) grey- and
white-matter probability maps that ship inside nilearn (Fonov et al., NeuroImage
2011;54:313-327), loaded without any download. Everything else (lobes, deep grey
nuclei, the territories of the anterior, middle and posterior cerebral arteries)
is drawn as smooth geometric regions in MNI millimetres, placed by hand on those
maps after Tatu et al., Neurology 1998;50:1699-1708 (arterial territories of the
cerebral hemispheres). The regions are coarse on purpose: they are seen through a
10-14 mm blur, and only their position relative to the anatomy matters. See
docs/data.md for the choices and their sources.

MNI (RAS) axes: +x = patient's right, +y = anterior, +z = superior.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

GRID_MM = 2.0

# Hard lobe labels: a per-subject, per-hemisphere perfusion factor is looked up by
# label. Labels may be hard because the factors differ by 5-10% only and the image
# is blurred by >= 10 mm, so the seams are invisible.
LOBES = ("frontal", "parietal", "temporal", "occipital", "deep_grey", "cerebellum", "brainstem")
TERRITORIES = ("ACA", "MCA", "PCA")

# Deep grey nuclei of one hemisphere as ellipsoids (centre at x > 0, semi-axes), MNI mm.
# Centres from the ICBM152 grey-matter map itself (probability peaks).
_NUCLEI = {
  "caudate_head": ((13.0, 12.0, 10.0), (5.0, 9.0, 8.0)),
  "caudate_body": ((15.0, -6.0, 20.0), (4.0, 10.0, 4.5)),
  "putamen": ((25.0, 2.0, 1.0), (5.5, 14.0, 9.0)),
  "pallidum": ((19.0, -3.0, -1.0), (3.5, 7.0, 5.0)),
  "thalamus": ((11.0, -18.0, 7.0), (7.0, 11.0, 7.5)),
}


@dataclasses.dataclass(frozen=True)
class Phantom:
  """Static maps on the 2 mm MNI grid, all [X, Y, Z] float32 unless said.

  origin: MNI mm of voxel (0, 0, 0); spacing: GRID_MM.
  cortex: grey matter outside the deep nuclei (cortex and cerebellar cortex), probability.
  white: white matter outside the deep nuclei, probability.
  deep: grey + white matter inside the deep grey nuclei (striatum, pallidum, thalamus).
  deep_mask: soft indicator (0..1) of those nuclei.
  label: uint8 lobe index (LOBES) * 2 + hemisphere (0 right, 1 left); 255 outside the brain.
  left: soft weight of the patient's left hemisphere (x < 0), 0..1.
  territory: [3, X, Y, Z] soft membership of ACA, MCA, PCA (cerebrum only; sums to <= 1).
  """
  origin: np.ndarray
  spacing: float
  cortex: np.ndarray
  white: np.ndarray
  deep: np.ndarray
  deep_mask: np.ndarray
  label: np.ndarray
  left: np.ndarray
  territory: np.ndarray

  @property
  def shape(self) -> tuple[int, int, int]:
    return self.cortex.shape

  def z_index(self, z_mm: float) -> float:
    """Fractional grid index of an MNI z coordinate."""
    return (z_mm - self.origin[2]) / self.spacing


def _sigmoid(t: np.ndarray) -> np.ndarray:
  return (1.0 / (1.0 + np.exp(-np.clip(t, -30.0, 30.0)))).astype(np.float32)


def _downsample(vol: np.ndarray, factor: int) -> np.ndarray:
  """Block mean (partial-volume correct) of a 1 mm map to `factor` mm."""
  sx, sy, sz = (s // factor * factor for s in vol.shape)
  v = vol[:sx, :sy, :sz].reshape(sx // factor, factor, sy // factor, factor, sz // factor, factor)
  return v.mean(axis=(1, 3, 5), dtype=np.float32)


def _load_templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ICBM152 2009 grey and white matter at 1 mm and their voxel->MNI affine."""
  # Imported here: nilearn pulls in scikit-learn (about 1.5 s), needed only to simulate.
  from nilearn import datasets
  gm = datasets.load_mni152_gm_template(resolution=1)
  wm = datasets.load_mni152_wm_template(resolution=1)
  affine = np.asarray(gm.affine)
  if not np.allclose(affine[:3, :3], np.eye(3)) or not np.allclose(wm.affine, affine):
    raise RuntimeError("nilearn's MNI152 templates are not on the expected 1 mm RAS grid; "
                       f"affine {affine.tolist()}")
  return (np.asarray(gm.get_fdata(dtype=np.float32)), np.asarray(wm.get_fdata(dtype=np.float32)),
          affine)


def _ellipsoid(x, y, z, centre, axes, edge=0.15):
  """Soft indicator of an ellipsoid, mirrored to both hemispheres."""
  r = np.sqrt(((np.abs(x) - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2
              + ((z - centre[2]) / axes[2]) ** 2)
  return _sigmoid((1.0 - r) / edge)


def _regions(x, y, z, margin_mm):
  """Soft cerebellum, brainstem, deep nuclei and arterial territories at MNI points."""
  ax = np.abs(x)
  m = margin_mm
  # Tentorium: the cerebellum's upper surface sits at about z = -5 at the vermis and
  # slopes down laterally and posteriorly (checked on the ICBM152 sagittal slices).
  z_tent = -5.0 - 0.4 * ax + 0.2 * np.minimum(y + 60.0, 0.0)
  cereb = _sigmoid((z_tent - z) / 2.0) * _sigmoid((-38.0 + 0.1 * ax - y) / 2.0)
  stem = (1 - cereb) * _sigmoid((14.0 - ax) / 2.0) * _sigmoid((y + 44.0) / 2.0) \
      * _sigmoid((-8.0 - y) / 2.0) * _sigmoid((-6.0 - z) / 2.0)
  cerebrum = np.clip(1.0 - cereb - stem, 0.0, 1.0)
  deep = np.zeros_like(x, dtype=np.float32)
  for centre, axes in _NUCLEI.values():
    deep = np.maximum(deep, _ellipsoid(x, y, z, centre, axes))
  thalamus = _ellipsoid(x, y, z, *_NUCLEI["thalamus"])

  # ACA (Tatu 1998): medial frontal and parietal surface up to the parieto-occipital
  # sulcus and a strip of the superior convexity that widens towards the vertex;
  # at the basal ganglia level only the medial frontal lobe.
  aca = _sigmoid((14.0 + 0.2 * np.clip(z, 0, 70) - ax) / m) \
      * _sigmoid((y - (5.0 - 1.2 * np.clip(z, 0, 60))) / m) * _sigmoid((z + 20.0) / m)
  # PCA: occipital lobe, inferomedial temporal lobe and thalamus.
  occipital = _sigmoid(((-60.0 - 0.3 * np.clip(z, 0, 40)) - y) / m) * _sigmoid((40.0 - z) / m)
  inferomedial_temporal = _sigmoid((2.0 - z) / m) * _sigmoid((-8.0 - y) / m) \
      * _sigmoid((42.0 - ax) / m)
  pca = np.maximum(np.maximum(occipital, inferomedial_temporal), thalamus)
  aca = aca * cerebrum
  pca = pca * (1.0 - aca) * cerebrum
  # MCA: the rest of the cerebrum, lateral convexity, insula and the lenticulostriate
  # supply of the basal ganglia.
  mca = np.clip(cerebrum - aca - pca, 0.0, 1.0)
  return cereb, stem, deep, np.stack([aca, mca, pca])


def _lobe_labels(x, y, z, cereb, stem, deep):
  """Hard lobe index (LOBES) at MNI points."""
  ax = np.abs(x)
  occipital = y < -62.0 - 0.3 * np.clip(z, 0, 45)  # parieto-occipital sulcus
  sylvian_z = 0.35 * np.clip(10.0 - y, 0, 60)       # upper edge of the temporal lobe
  temporal = ~occipital & (z < sylvian_z) & (y < 28.0) & (ax > 22.0)
  central_y = -5.0 - 0.45 * np.clip(z - 20.0, 0, 60)  # central sulcus
  frontal = ~occipital & ~temporal & (y > central_y)
  lobe = np.full(x.shape, LOBES.index("parietal"), np.uint8)
  lobe[frontal] = LOBES.index("frontal")
  lobe[temporal] = LOBES.index("temporal")
  lobe[occipital] = LOBES.index("occipital")
  lobe[deep > 0.5] = LOBES.index("deep_grey")
  lobe[stem > 0.5] = LOBES.index("brainstem")
  lobe[cereb > 0.5] = LOBES.index("cerebellum")
  return lobe


@functools.lru_cache(maxsize=2)
def load_phantom(margin_mm: float = 4.0) -> Phantom:
  """Builds the static maps (about 1 s; cached per process).

  Args:
    margin_mm: width of the sigmoid edges of the arterial territories (MNI mm):
      the defects' margins before the scanner's blur.
  """
  gm1, wm1, affine = _load_templates()
  factor = int(GRID_MM)
  gm = _downsample(gm1, factor)
  wm = _downsample(wm1, factor)
  # Centre of the first 2 mm block in MNI mm.
  origin = affine[:3, 3] + (factor - 1) / 2.0
  x, y, z = np.meshgrid(*(origin[i] + GRID_MM * np.arange(gm.shape[i], dtype=np.float32)
                          for i in range(3)), indexing="ij")
  cereb, stem, deep, territory = _regions(x, y, z, margin_mm)
  tissue = np.clip(gm + wm, 0.0, 1.0)
  lobe = _lobe_labels(x, y, z, cereb, stem, deep)
  label = (lobe * 2 + (x < 0)).astype(np.uint8)
  label[tissue < 0.02] = 255
  return Phantom(origin=origin.astype(np.float32), spacing=GRID_MM,
                 cortex=(gm * (1 - deep)).astype(np.float32),
                 white=(wm * (1 - deep)).astype(np.float32),
                 deep=(tissue * deep).astype(np.float32),
                 deep_mask=deep.astype(np.float32),
                 label=label,
                 left=_sigmoid(-x / 1.5),
                 territory=(territory * (tissue > 0.02)).astype(np.float32))
