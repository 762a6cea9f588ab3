"""Settings of --mode=evaluate and --mode=select, with a comment on each.

configs/default.py makes this the `evaluate` block of every config, and modes.py
reads it from the config given on the command line; the classifier block is part of the classifier cache key,
so changing it trains a new classifier instead of reusing a stale one.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0                    # generated images use sample indices 0..N-1 of this seed
  c.batch_size = 256            # generation batch; speed only, never the images
  c.grid_columns = 4            # images per group and condition in the Fig. 4 grid
  c.ms_ssim_pairs = 200         # random pairs per group for the mean pairwise MS-SSIM
  # The utility study (evaluation/utility.py, docs/utility.md) of a run trained with held-out
  # subjects (data.holdout_fraction): classifiers trained on the GAN's training subjects in
  # five arms (real; rebalanced; classic augmentation; + synthetic; both), tested on the
  # held-out subjects. It replaces the augmentation study on such runs.
  c.utility_study = True
  c.utility_seeds = 5           # classifier seeds per arm (means with 95 % intervals, paired differences)
  c.utility_steps = 1800        # Adam steps of every classifier of the study
  # 0: the synthetic arms draw every slice, real or synthetic, equally often. s in (0, 1):
  # they draw every condition equally often (as the rebalanced arm does), s of a
  # condition's draws from its synthetic slices and 1 - s from its real ones.
  c.utility_synthetic_share = 0.0
  # The augmentation study of a run trained on every subject (no holdout): its held-out
  # subjects were seen by the GAN, so its figures can leak (docs/evaluation.md).
  c.augmentation_study = True   # evaluate: train-on-synthetic and real+synthetic classifiers
  # Training seeds per classifier of that study (mean and SD reported): one classifier's
  # held-out accuracy moves by a few points with its seed alone (docs/evaluation.md).
  c.augmentation_repeats = 3
  # Adam steps of every classifier of that study (all three arms). More than the reference
  # classifier's: real + synthetic holds about twice the slices, and at 600 steps even a
  # perfect generator (the simulator with another seed, experiments/fidelity/augmentation_perfect.py)
  # scored below real alone (0.879 vs 0.899); 1800 is the fewest measured at which it does
  # not (0.972 vs 0.966). About 2 min per classifier on one CPU core.
  c.augmentation_steps = 1800

  # The condition classifier: trained once per data set on real slices, cached in the workdir.
  c.classifier = ml_collections.ConfigDict()
  c.classifier.widths = (16, 32, 64)   # conv widths at 64, 32, 16 px (each followed by 2x pooling)
  c.classifier.features = 64           # feature layer: Frechet / kernel distances use it
  c.classifier.steps = 600             # Adam steps (about 15 s on 2 CPU cores)
  c.classifier.batch_size = 32
  c.classifier.learning_rate = 1e-3
  c.classifier.holdout_fraction = 0.25  # share of subjects held out (never trained on)
  c.classifier.max_shift = 2           # training shift in rows, as the GAN's augmentation
  c.classifier.seed = 0                # split, initialisation and batches

  # The memorisation audit of --mode=evaluate (evaluation/memorisation.py,
  # docs/memorisation.md): each generated image's nearest training slice against the
  # nearest-neighbour distances of real patients the run has not seen.
  c.memorisation = ml_collections.ConfigDict()
  c.memorisation.enabled = True
  # A generated image closer to the training set than this quantile of the new-patient
  # distances of its condition is a near-copy (expected share: this quantile).
  # --mode=sample --reject_near_copies drops images by the same rule.
  c.memorisation.near_copy_quantile = 0.01
  # Gaussian sigma (pixels) applied to every slice before the pixel distance, so that
  # smoother-than-real images do not read as near-copies (docs/memorisation.md); 0: none.
  c.memorisation.smooth_px = 1.0
  c.memorisation.closest_shown = 16     # generated/training pairs in the report's figure

  # --mode=select's rule (docs/evaluation.md): among epochs whose generated-image
  # condition accuracy is within `accuracy_margin` of the best scored epoch and whose
  # diversity ratio is at least `min_diversity`, the lowest mean Frechet distance wins.
  c.select = ml_collections.ConfigDict()
  c.select.accuracy_margin = 0.05
  c.select.min_diversity = 0.8
  return c
