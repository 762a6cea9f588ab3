"""How much the Eq. 6 blend raises the mean count ratio MC of what D sees, per family.

    PYTHONPATH=. python experiments/robust_fidelity/blend_leak.py [FAMILY ...]

A blend averages the count noise of two slices, so a blended slice's hottest pixel
stands out less and its MC (mean of the max-normalised slice, the paper's mean count
ratio) is higher than a real slice's. D learns the blended share of its real view, and
a generator that learns D's view exactly draws MC that much too high. This prints, per
family of configs/data.py and pattern, the real slices' MC and that of the view D
sees (the recipe's renormalised blends, no shift) at blend_prob 1, 0.5 (the former recipe)
and 0.25, averaged over 4 draws, and the real slices' max / p99 (how far the hottest
pixel stands out: the noisier the data, the more a blend smooths it).
"""

import sys

import numpy as np


def main(families):
  import jax
  from configs import data as data_config
  from spect_fastgan_jax import augment, data, input_pipeline
  from spect_fastgan_jax.evaluation import metrics

  print("| family | pattern | real MC | blend_prob 1 | 0.5 (the former recipe) | 0.25 | real max / p99 |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for family in families:
    cfg = data_config.with_family(data_config.get_config(), family)
    ds = data.load_training_set(cfg, log=lambda m: None)
    dd = input_pipeline.device_data(ds, cfg.levels)
    real = metrics.normalise(np.asarray(dd.slices[:, 1]))
    mc = {"real": real.mean(axis=(1, 2))}
    for bp in (1.0, 0.5, 0.25):
      views = [metrics.normalise(np.asarray(augment.augment(
          jax.random.PRNGKey(k), dd.slices, dd.flip_ok, max_shift=0, blend=True, blend_prob=bp,
          renormalise=True))).mean(axis=(1, 2)) for k in range(4)]
      mc[bp] = np.mean(views, axis=0)
    flat = real.reshape(len(real), -1)
    peak = float(np.mean(flat.max(1) / np.quantile(flat, 0.99, axis=1)))
    for pattern in ("normal", "unilateral", "bilateral"):
      m = ds.pattern == pattern
      r = mc["real"][m].mean()
      cells = " | ".join(f"{mc[bp][m].mean():.4f} ({mc[bp][m].mean() / r - 1:+.1%})" for bp in (1.0, 0.5, 0.25))
      print(f"| {family} | {pattern} | {r:.4f} | {cells} | {peak:.3f} |")


if __name__ == "__main__":
  from configs import data as data_config
  main(sys.argv[1:] or list(data_config.FAMILIES))
