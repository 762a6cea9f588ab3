"""What the paper's tests say when generated normal and bilateral slices are flipped
left/right at random, the symmetry the training augmentation gives those patterns.

    python experiments/fidelity/symmetric_sampling.py RUN_WORKDIR EPOCH [EPOCH ...] [--seed 0]

Training flips real normal and bilateral slices with probability 0.5 (docs/model.md,
"Augmentation", step 3), so the distribution D sees for them is left/right symmetric,
and a generator that matched it would be too. A residual tilt of G (a sub-percent LR offset that changes
sign from epoch to epoch) fails the LR ANOVA on 551 normals. This generates the images
`--mode=evaluate` generates (Table 1 counts, sample indices 0..N-1 of --seed), and prints
per pattern the mean LR and the MC / LR ANOVA P against the real slices, as generated
and with every normal and bilateral image flipped where an independent fair coin says so
(unilateral images untouched), with the per-condition diversity ratio of both.
"""

import argparse

import study_common
import numpy as np


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("epochs", type=int, nargs="+")
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()

  from spect_fastgan_jax import conditions
  from spect_fastgan_jax.evaluation import metrics, stats

  _, ecfg, _, real, images = study_common.run_images(args.workdir)
  for epoch in args.epochs:
    fake = images(epoch, args.seed)
    coin = np.random.default_rng(1000 + args.seed).random(len(fake.pattern)) < 0.5
    flip = coin & np.isin(fake.pattern, conditions.FLIP_SYMMETRIC)
    sym = np.where(flip[:, None, None], fake.images[:, :, ::-1], fake.images)
    print(f"epoch {epoch} (seed {args.seed}): {flip.sum()} of {len(flip)} images flipped")
    for pat in conditions.PATTERNS:
      r = real.images[real.mask(pat)]
      m = fake.pattern == pat
      cells = []
      for name, imgs in (("as generated", fake.images[m]), ("symmetrised", sym[m])):
        lr, mc = metrics.lr_ratio(imgs), metrics.mean_counts(imgs)
        p_lr = stats.compare({"real": metrics.lr_ratio(r), "fake": lr})["anova_p"]
        p_mc = stats.compare({"real": metrics.mean_counts(r), "fake": mc})["anova_p"]
        cells.append(f"{name}: LR {lr.mean():.4f} P {p_lr:.4f}, MC P {p_mc:.3f}")
      print(f"  {pat:10s} real LR {metrics.lr_ratio(r).mean():.4f} | " + " | ".join(cells))
    for level, pat in real.conditions():
      rm, fm = real.mask(pat, level), (fake.level == level) & (fake.pattern == pat)
      if pat == "unilateral" or fm.sum() < 2:
        continue
      base = 1 - metrics.pairwise_ms_ssim(real.images[rm], int(ecfg.ms_ssim_pairs))
      d0 = (1 - metrics.pairwise_ms_ssim(fake.images[fm], int(ecfg.ms_ssim_pairs))) / base
      d1 = (1 - metrics.pairwise_ms_ssim(sym[fm], int(ecfg.ms_ssim_pairs))) / base
      print(f"  diversity {level}/{pat}: as generated {d0:.2f}, symmetrised {d1:.2f}")


if __name__ == "__main__":
  main()
