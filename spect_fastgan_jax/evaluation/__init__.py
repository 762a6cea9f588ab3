"""Fidelity evaluation of a trained run (docs/evaluation.md).

Modules:
  metrics       MC, image SD, LR, mean/SD maps, MS-SSIM, Frechet and kernel distances
  stats         one-way ANOVA with Dunnett / Tukey HSD post-hoc tests (scipy), stars
  classifier    condition classifier (level, pattern, side), subject-wise split, cache
  score         real vs generated groups: the paper's statistics and the classifier scores
  generated     a run's generated images at an epoch, as many as the real data has
  augmentation  train-on-synthetic and real + synthetic vs real only
  memorisation  nearest training slices against new patients: near-copies, C_T, the filter
  figures       Figs. 4-6 of the paper and metrics against epoch
  report        --mode=evaluate: report.md, report.json, figures
  select        --mode=select: scores per epoch, table, plot, the best epoch by a rule

The `evaluate` config block and its defaults are configs/evaluate.py.
"""
