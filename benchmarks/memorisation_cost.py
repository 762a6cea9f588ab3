"""Cost of the memorisation audit at Table 1 counts (938 slices, 2814 training slices).

    python benchmarks/memorisation_cost.py [--repeats=5] [--max_shift=2]

On the embedded default set: builds the new-patient reference (leave-one-subject-out
nearest distances, pixel and classifier features) and audits 938 images (the real
centre slices with pixel noise, as many per condition as --mode=evaluate generates;
the cost does not depend on what the images show). Prints the median and range of
`--repeats` runs of each part, and the classifier's feature time within them. The
classifier is trained once (about 15 s) into .cache/benchmarks and reused.
"""

import argparse
import json
import os
import time

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--max_shift", type=int, default=2)
  args = p.parse_args()
  from spect_fastgan_jax.evaluation import memorisation

  ds, features = common.embedded_set_and_features()
  rng = np.random.default_rng(0)
  images = np.clip(ds.slices[:, 1] + rng.normal(0, 0.02, ds.slices[:, 1].shape), 0, None)
  features(images[:8])  # compile once, outside the timings

  times = {"reference (pixel + features)": [], "reference (pixel only)": [], "audit of 938 images": [],
           "features of 938 + 2814 images": []}
  for _ in range(args.repeats):
    t = time.perf_counter()
    with_f = memorisation.new_patient_reference(ds, max_shift=args.max_shift, flip=True, features=features)
    times["reference (pixel + features)"].append(time.perf_counter() - t)
    t = time.perf_counter()
    memorisation.new_patient_reference(ds, max_shift=args.max_shift, flip=True)
    times["reference (pixel only)"].append(time.perf_counter() - t)
    t = time.perf_counter()
    features(images), features(with_f.train.images)
    times["features of 938 + 2814 images"].append(time.perf_counter() - t)
    t = time.perf_counter()
    memorisation.audit(with_f, images, ds.level, ds.pattern, features(images))
    times["audit of 938 images"].append(time.perf_counter() - t)
  out = {k: {"median_s": round(float(np.median(v)), 2), "min_s": round(min(v), 2), "max_s": round(max(v), 2)}
         for k, v in times.items()}
  out["repeats"], out["max_shift"], out["cpus"] = args.repeats, args.max_shift, os.cpu_count()
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
