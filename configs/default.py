"""Every hyperparameter of a run, with the paper's values as defaults.

`dataset_a.py` and `dataset_b.py` derive from this and change only what differs
between the paper's datasets. Override any field on the command line:
`python launch.py --config=configs/dataset_a.py --config.num_epochs=5`.
"""

import ml_collections

from configs import data as data_config
from configs import evaluate as evaluate_config


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.seed = 0                 # one seed drives data order, augmentation, z and init
  config.num_epochs = 1000        # paper: 1000 epochs
  config.batch_size = 4           # paper: batch size 4
  # Devices each batch is split over (data parallel); -1: as many visible devices
  # as divide batch_size evenly.
  config.num_devices = -1
  # Seeds trained side by side in one program (seed, seed+1, ...), each a complete
  # run in <workdir>/seed_<s>; 1: one run in <workdir> itself.
  config.num_seeds = 1
  # How an epoch runs: 'scan' (one compiled lax.scan, no host work per step),
  # 'steps' (a host loop over one jitted step) or 'auto' (scan on GPU/TPU, steps
  # on CPU, where XLA runs loop bodies ~20x slower; see benchmarks/train_speed.py).
  config.train_loop = "auto"

  config.data = data_config.get_config()

  # --- Networks (docs/model.md). Channel widths by resolution. ---
  config.model = ml_collections.ConfigDict()
  config.model.z_dim = 256                         # latent size (paper: 256)
  config.model.embed_dim = 64                      # the fully connected layer's output (paper: 64)
  config.model.g_channels = (256, 128, 128, 64, 32)  # G at 4, 8, 16, 32, 64 px
  config.model.d_channels = (32, 64, 128, 256)     # D at 64, 32, 16, 8 px (input block, B0, B1, B2)
  config.model.d_out_channels = 256                # D output block 1x1 conv
  config.model.dec_channels = (128, 64, 64)        # decoders after each up block: 16, 32, 64 px
  config.model.noise_injection = True              # FastGAN's per-pixel noise with learned scale
  config.model.spectral_norm = True                # on every conv/dense of G, D and decoders
  config.model.sle_slope = 0.1                     # LeakyReLU slope inside the skip-layer excitation
  config.model.dtype = "float32"                   # compute dtype: float32 | bfloat16
  config.model.conv_impl = "auto"                  # auto | xla | matmul (same function; speed only)
  # Per-pixel noise also at 64 px (FastGAN: 8 and 32 px only), for the count noise of
  # real slices (docs/fidelity.md). Paper/FastGAN: False.
  config.model.noise_full_res = False
  # How the condition enters G: 'concat' (paper: y joins z before the dense layer) or
  # 'cbn' (also conditional BatchNorm in every block, as BigGAN).
  config.model.g_cond = "concat"
  # How the condition enters D: 'input' (paper: C constant channels beside the image),
  # 'projection' (a projection head on the output block) or 'both'.
  config.model.d_cond = "input"
  # Row and column coordinate channels at D's input (CoordConv), so D sees where the
  # brain sits in the field of view. Paper: False.
  config.model.d_coords = False
  # The networks' value for a slice's maximum count (zero counts are -1). Paper: 1.0,
  # where G's tanh saturates; below 1 leaves G headroom for its brightest pixels,
  # and samples are then divided by their own maximum (augment.py).
  config.model.output_peak = 1.0
  # G divides each output by its own maximum (mapped to output_peak), as every real
  # slice is normalised, so D judges mean counts relative to the hottest pixel, as
  # the paper's MC does (models.Generator). Paper: False.
  config.model.normalise_output = False

  # --- Losses (paper Eqs. 1-5). ---
  config.loss = ml_collections.ConfigDict()
  config.loss.recon_distance = "l1"   # 'l1' (paper) or 'l2' for L_recon
  # Weight of a mode-seeking term on G (MSGAN-like, losses.mode_seeking_loss): two
  # images of one condition from two z are pulled apart until they differ by
  # `mode_seeking_target` x the mean distance of two real slices of that condition;
  # beyond that it pulls no more. 0 turns it off (paper: off). Costs a second G batch.
  config.loss.mode_seeking = 0.0
  config.loss.mode_seeking_target = 1.0
  # How many of a batch's rows get a partner image for that term (0: every row).
  # Fewer rows make G's second batch smaller: a step costs less.
  config.loss.mode_seeking_pairs = 0
  # Weight of an auxiliary condition classifier on D (AC-GAN, models.Discriminator
  # aux_head): trained on real slices only, and G's slices are asked to be classified
  # as their condition, so the defects are drawn as clearly as the data has them.
  # 0 turns it off (paper: off; D has no such head).
  config.loss.condition_aux = 0.0

  # --- Adam for G and D (paper). ---
  config.optim = ml_collections.ConfigDict()
  config.optim.lr_g = 2e-4
  config.optim.lr_d = 2e-4
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.0        # EMA copy of G for sampling; 0 disables it (paper: none)
  config.optim.ema_warmup = False     # EMA decay ramps as (1+t)/(10+t) up to ema_decay
  # Both learning rates fall linearly to 1/N of their value over the last N epochs of
  # num_epochs (0: constant, as the paper).
  config.optim.lr_decay_epochs = 0

  # --- Augmentation of real slices, on device (paper). ---
  config.augment = ml_collections.ConfigDict()
  config.augment.blend = True         # Eq. 6: w*z1 + (1-w)*z2, z2 the slice above or below
  # Share of slices blended when `blend` (paper: 1.0, all). A blend averages the count
  # noise of two slices, so blends only teach G slices smoother than real (docs/fidelity.md).
  config.augment.blend_prob = 1.0
  # With > 0, blend_prob is derived from the training slices instead: the share whose
  # blends raise the mean count ratio MC of D's real view by this much,
  # min(1, blend_mc_excess / the excess of blending every slice), so noisy data is
  # blended less (augment.blend_share). config.json records the share. Paper: 0 (off).
  config.augment.blend_mc_excess = 0.0
  config.augment.max_shift = 2        # anterior-posterior shift in [-max_shift, max_shift] px, zero fill
  config.augment.flip = True          # left-right flip, p = 0.5, normal and bilateral slices
  # With augment.flip, flip unilateral slices too (the label stays "unilateral"; the
  # defect moves to the other side): every defect is learnt on both sides, symmetric
  # sampling flips unilateral images too, and the memorisation audit compares mirror
  # images. True needs data.condition_side=False and training sides that are even
  # (binomial P >= 0.05) and refuses others; "auto" flips where both hold and stands
  # down where not, with a log line (config.json records what it ran with). Paper: False.
  config.augment.flip_unilateral = ml_collections.FieldReference(False, field_type=object)
  # Divide each blended slice by its own maximum again, so every real slice D sees
  # peaks at 1 as the evaluation's max-normalised slices do (augment.py). Paper: False.
  config.augment.renormalise = False
  # Differentiable augmentation of what D sees, real AND fake alike (DiffAugment;
  # augment.diff_augment). Paper: none (all 0).
  config.augment.diff_shift = 0       # anterior-posterior shift up to N px (never left/right)
  config.augment.diff_cutout = 0.0    # side of an erased square, fraction of 64 px
  config.augment.diff_intensity = 0.0  # counts scaled by a factor in 1 +/- this

  # --- Logging and checkpoints. ---
  config.log = ml_collections.ConfigDict()
  config.log.sample_every_epochs = 50   # sample grid PNG every N epochs (0: never)
  # The diversity curve (evaluation/monitor.py): every N epochs score a fixed small
  # sample (diversity ratio, condition accuracy, pixel-wise SD ratio, left/right
  # centroid offset) into metrics.jsonl, TensorBoard and the progress line, with a
  # warning when diversity falls below evaluate.select.min_diversity. 0: never.
  config.log.monitor_every_epochs = 5
  config.log.monitor_per_condition = 32  # images per condition in that sample
  config.log.tensorboard = True         # TensorBoard event files (no TensorFlow needed)
  config.log.progress = True            # progress bar with ETA on stderr
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.keep_train_states = 3   # full training states kept for resuming (the last N)
  config.checkpoint.sampler_every_epochs = 1  # generator checkpoint every N epochs (1: every epoch)

  # --- Sampling (--mode=sample). ---
  config.sample = ml_collections.ConfigDict()
  config.sample.seed = 0
  config.sample.num_per_condition = -1   # -1: as many per condition as the real data has (Table 1)
  config.sample.batch_size = 256         # images per compiled call: speed, and at most the last bit
                                         # of an image (float rounding); info.json records it
  # Flip each normal and bilateral image left/right on a coin of its own (seed, index),
  # the symmetry training gives those patterns (augment.flip): the generator's residual
  # sub-percent left/right tilt otherwise fails the paper's LR test (docs/fidelity.md).
  # Unilateral images flip only where training flips them (augment.flip_unilateral).
  # Paper: False (it sampled G as is).
  config.sample.symmetric_flip = False

  # --- Evaluation and epoch selection (--mode=evaluate, --mode=select); each field is
  # commented in configs/evaluate.py. ---
  config.evaluate = evaluate_config.get_config()
  return config


# Variants, chosen after the config file's name: --config=configs/dataset_a.py:cpu.
VARIANTS = {
    "": "the paper's settings (1000 epochs at the default widths: a GPU schedule)",
    "paper": "the same as no variant: exactly the paper's settings",
    "recipe": "the fidelity recipe (docs/fidelity.md) at the default widths",
    "cpu": "the fidelity recipe at reduced widths, trained in under an hour on a 2-core CPU",
    "cpu_paper": "the paper's settings on the CPU schedule (widths, epochs): the recipe's baseline",
}


def fidelity_recipe(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The changes to the paper's training that docs/fidelity.md measured to stop
  conditional mode collapse and draw the conditions; each is one config field.
  docs/model.md's table gives each field's paper value, recipe value and effect."""
  # Optimiser: Adam's beta1 as most GANs use it, and sampling from an EMA of G.
  config.optim.b1 = 0.5
  config.optim.ema_decay = 0.999
  config.optim.ema_warmup = True
  # Losses: the mode-seeking hinge that stops the collapse, and an AC-GAN head on D
  # so the defects are drawn as distinctly as the data has them
  # (experiments/fidelity/LOG.md, "An auxiliary condition classifier on D").
  config.loss.mode_seeking = 1.0
  config.loss.mode_seeking_target = 1.2
  config.loss.condition_aux = 0.5
  # Augmentation: the paper's real-only shift and blend leak into G (docs/fidelity.md):
  # brains moved as the real ones never are, blends smoother than any real slice.
  # DiffAugment's shift shows D moved brains without teaching G to move them.
  config.augment.diff_shift = 6
  # The blend's share follows the data's own count noise: noisy slices are blended
  # less (augment.blend_mc_excess). Unilateral defects are learnt on both sides where
  # the run and its training sides allow it (experiments/robust_fidelity/LOG.md, R1).
  config.augment.max_shift = 0
  config.augment.blend_mc_excess = 0.02
  config.augment.flip_unilateral = "auto"
  config.augment.renormalise = True
  # Networks: G's output scaled as real slices are, noise at 64 px, conditional
  # BatchNorm in G and a projection head in D.
  config.model.output_peak = 0.8
  config.model.normalise_output = True
  config.model.noise_full_res = True
  config.model.g_cond = "cbn"
  config.model.d_cond = "projection"
  # Data and sampling: rare conditions drawn as often as common ones; sampled normal
  # and bilateral slices mirrored on a coin per image, as the real ones are symmetric.
  config.data.condition_balance = 1.0
  config.sample.symmetric_flip = True
  return config


def cpu_schedule(config: ml_collections.ConfigDict, recipe: bool = True) -> ml_collections.ConfigDict:
  """Widths and a length that fit an hour on a 2-core CPU; with the recipe unless
  `recipe` is False (then the paper's settings, for comparison)."""
  if recipe:
    fidelity_recipe(config)
  config.model.g_channels = (64, 32, 32, 16, 16)
  config.model.d_channels = (16, 16, 32, 64)
  config.model.d_out_channels = 64
  config.model.dec_channels = (32, 16, 16)
  config.num_epochs = 120
  config.log.sample_every_epochs = 10
  return config


def with_variant(config: ml_collections.ConfigDict, variant: str | None) -> ml_collections.ConfigDict:
  """`config` changed as `variant` says: a schedule (a key of VARIANTS), a data family
  (a key of configs/data.py FAMILIES), or one of each joined by '+' ('cpu+lowcount');
  anything else is an error."""
  parts = [p for p in (variant or "").split("+") if p]
  schedules = [p for p in parts if p in VARIANTS]
  families = [p for p in parts if p in data_config.FAMILIES]
  unknown = [p for p in parts if p not in VARIANTS and p not in data_config.FAMILIES]
  if unknown or len(schedules) > 1 or len(families) > 1:
    raise ValueError(
        f"unknown config variant {variant!r}: give a schedule, a data family or one of each "
        "joined by '+'; schedules: " + "; ".join(f"{k or '(none)'}: {v}" for k, v in VARIANTS.items())
        + "; families: " + ", ".join(data_config.FAMILIES))
  if families:
    data_config.with_family(config.data, families[0])
  schedule = schedules[0] if schedules else ""
  if schedule == "recipe":
    return fidelity_recipe(config)
  if schedule in ("cpu", "cpu_paper"):
    return cpu_schedule(config, recipe=schedule == "cpu")
  return config
