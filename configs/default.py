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

  # --- Losses (paper Eqs. 1-5). ---
  config.loss = ml_collections.ConfigDict()
  config.loss.recon_distance = "l1"   # 'l1' (paper) or 'l2' for L_recon

  # --- Adam for G and D (paper). ---
  config.optim = ml_collections.ConfigDict()
  config.optim.lr_g = 2e-4
  config.optim.lr_d = 2e-4
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.ema_decay = 0.0        # EMA copy of G for sampling; 0 disables it (paper: none)

  # --- Augmentation of real slices, on device (paper). ---
  config.augment = ml_collections.ConfigDict()
  config.augment.blend = True         # Eq. 6: w*z1 + (1-w)*z2, z2 the slice above or below
  config.augment.max_shift = 2        # anterior-posterior shift in [-max_shift, max_shift] px, zero fill
  config.augment.flip = True          # left-right flip, p = 0.5, normal and bilateral only

  # --- Logging and checkpoints. ---
  config.log = ml_collections.ConfigDict()
  config.log.sample_every_epochs = 50   # sample grid PNG every N epochs (0: never)
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
