"""What the real-only augmentation teaches G: the scores of a perfect generator.

    python experiments/fidelity/augmentation_leak.py

A generator that learns its training distribution exactly reproduces the *augmented*
real slices, since D only ever sees those. This scores the augmented slices of the
embedded default set (each real slice augmented once, as one epoch draws them) against
the unaugmented ones, with the evaluation's own metrics: per (level, pattern) the
diversity ratio (MS-SSIM), the pixel-wise SD ratio, and overall the mean count MC and
max / p99. Settings: the paper's (anterior-posterior shift +/-2 px, blend), shift +/-1,
no shift, and neither shift nor blend; the blend_prob 0.5 row blends half the slices.
The issue's thresholds are 0.8 (diversity) and 0.8-1.2 (SD); real MC is the last row's.
"""

import json

import study_common  # noqa: F401  (puts the repository on sys.path)
import numpy as np


def main():
  import jax
  from configs import data as data_config
  from spect_fastgan_jax import augment, conditions, data, input_pipeline
  from spect_fastgan_jax.evaluation import metrics

  ds = data.load_training_set(data_config.get_config(), log=lambda m: None)
  dd = input_pipeline.device_data(ds, data_config.get_config().levels)
  real = np.asarray(dd.slices[:, 1])
  settings = {"paper: shift 2, blend": dict(max_shift=2, blend=True),
              "shift 1, blend": dict(max_shift=1, blend=True),
              "shift 0, blend": dict(max_shift=0, blend=True),
              "shift 0, blend_prob 0.5": dict(max_shift=0, blend=True, blend_prob=0.5),
              "shift 0, no blend (the real slices)": dict(max_shift=0, blend=False)}
  out = {}
  for name, kw in settings.items():
    aug = np.asarray(augment.augment(jax.random.PRNGKey(1), dd.slices, dd.flip_ok, renormalise=True, **kw))
    row = {}
    for level in conditions.LEVELS:
      for pattern in conditions.PATTERNS:
        m = (ds.level == level) & (ds.pattern == pattern)
        if m.sum() < 2:
          continue
        div = (1 - metrics.pairwise_ms_ssim(aug[m], 200)) / (1 - metrics.pairwise_ms_ssim(real[m], 200))
        sd = metrics.mean_pixelwise_sd(aug[m]) / metrics.mean_pixelwise_sd(real[m])
        row[f"{level}/{pattern}"] = f"div {div:.2f}, SD {sd:.2f}"
    flat = metrics.normalise(aug).reshape(len(aug), -1)
    row["MC"] = round(float(flat.mean()), 4)
    row["max/p99"] = round(float(np.mean(1 / np.percentile(flat, 99, axis=1))), 3)
    out[name] = row
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
