"""Every hyperparameter of a run, with the paper's values as defaults.

`dataset_a.py` and `dataset_b.py` derive from this and change only what differs
between the paper's datasets. Override any field on the command line:
`python launch.py --config=configs/dataset_a.py --config.num_epochs=5`.
"""

import ml_collections

from configs import data as data_config
from spect_fastgan_jax.evaluation import config as evaluate_config


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

  # --- Networks (MODEL.md). Channel widths by resolution. ---
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

  # --- Losses (paper Eqs. 1-5). ---
  config.loss = ml_collections.ConfigDict()
  config.loss.recon_distance = "l1"   # 'l1' (paper) or 'l2' for L_recon
  # Weight of a mode-seeking term on G (MSGAN-like, losses.mode_seeking_loss): two
  # images of one condition from two z are pulled apart until they differ by
  # `mode_seeking_target` x the mean distance of two real slices of that condition;
  # beyond that it pulls no more. 0 turns it off (paper: off). Costs a second G batch.
  config.loss.mode_seeking = 0.0
  config.loss.mode_seeking_target = 1.0

  # --- Adam for G and D (paper). ---
  config.optim = ml_collections.ConfigDict()
  config.optim.lr_g = 2e-4
  config.optim.lr_d = 2e-4
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.0        # EMA copy of G for sampling; 0 disables it (paper: none)
  config.optim.ema_warmup = True      # EMA decay ramps as (1+t)/(10+t) up to ema_decay

  # --- Augmentation of real slices, on device (paper). ---
  config.augment = ml_collections.ConfigDict()
  config.augment.blend = True         # Eq. 6: w*z1 + (1-w)*z2, z2 the slice above or below
  config.augment.max_shift = 2        # anterior-posterior shift in [-max_shift, max_shift] px, zero fill
  config.augment.flip = True          # left-right flip, p = 0.5, normal and bilateral only
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
  config.sample.batch_size = 256         # affects speed only, never the images

  # --- Evaluation and epoch selection (--mode=evaluate, --mode=select); each field is
  # commented in spect_fastgan_jax/evaluation/config.py. ---
  config.evaluate = evaluate_config.get_config()
  return config
