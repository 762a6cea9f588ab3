"""How much of the pixel audit's Z_U / C_T comes from smoothness rather than copying.

    python experiments/fidelity/memorisation_smoothing.py [--max_shift=0]

Each real centre slice of the embedded default set is smoothed with a Gaussian of
sigma 0.5 / 0.75 / 1.0 px and audited as if it were generated, against the other
subjects' training slices (leave-one-subject-out, so no image is compared with its
own subject: none is a copy), with the pixel distance on raw slices and on slices
smoothed by evaluate.memorisation.smooth_px (1 px, the default). On raw slices a
smoother image sits closer, in RMS, to every noisy slice, so its pixel C_T turns
negative with no copying at all; the feature C_T shows what the classifier's
features see. docs/memorisation.md reads a run's audit against these figures.
"""

import argparse
import json

import study_common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
from scipy import ndimage

from benchmarks.common import embedded_set_and_features  # as benchmarks/memorisation_cost.py


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--max_shift", type=int, default=0)
  args = p.parse_args()
  from spect_fastgan_jax.evaluation import memorisation, metrics

  ds, features = embedded_set_and_features()
  refs = {s: memorisation.new_patient_reference(ds, max_shift=args.max_shift, flip=True, smooth_px=s,
                                                features=features) for s in (0.0, 1.0)}
  real = metrics.normalise(ds.slices[:, 1])
  out = {}
  for sigma in (0.0, 0.5, 0.75, 1.0):
    imgs = metrics.normalise(ndimage.gaussian_filter(real, sigma=(0, sigma, sigma)) if sigma else real)
    f = features(imgs)
    z = {"pixel, raw": [], "pixel, smoothed 1 px": [], "feature": []}
    w = []
    for l, pt in refs[0.0].pixel:
      q = np.flatnonzero((ds.level == l) & (ds.pattern == pt))
      for s, ref in refs.items():
        cand = np.flatnonzero(ref.train.mask(l, pt))
        own = ds.subject[q][:, None] == ref.train.subject[cand][None, :]
        px = memorisation.nearest_pixel(memorisation.for_pixels(imgs[q], s), ref.train_px[cand],
                                        memorisation.shifts_and_flips(args.max_shift, True, pt), own).distance
        z["pixel, raw" if s == 0 else "pixel, smoothed 1 px"].append(memorisation.copying_z(px, ref.pixel[(l, pt)]))
      ft = memorisation.nearest_feature(f[q], ref.train_features[cand], own).distance
      z["feature"].append(memorisation.copying_z(ft, ref.feature[(l, pt)]))
      w.append(len(q))
    out[f"real slices smoothed by {sigma} px"] = {
        "MC": round(float(metrics.mean_counts(imgs).mean()), 4),
        **{f"C_T {k}": round(float(np.average(v, weights=w)), 2) for k, v in z.items()}}
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
