"""The run's named PRNG key streams.

Every random draw of a run derives from one base key, `PRNGKey(config.seed)`, which
the training state carries (TrainState.key). Each use folds in its own constant, so
the draws never share randomness by accident:

  step s             fold_in(key, s), s = 0, 1, ... (augmentation, z, noise, crops)
  INIT               the networks' initial weights
  EPOCH_ORDER        then fold_in(., epoch): the permutation of each epoch
  SAMPLER_STATS      the BatchNorm statistics refitted for an EMA generator

A sample drawn after training has its own stream, `fold_in(PRNGKey(seed), index)`
(sample.sample_keys), independent of the training key.

The constants are those the first runs used, so every documented run reproduces.
INIT equals step 1's constant; the two keys are split differently (2 vs 5 ways)
and feed different draws (initial weights vs the second step's augmentation).
"""

import jax

INIT = 1
EPOCH_ORDER = 0x0E0C
SAMPLER_STATS = 0xE3A


def stream(key: jax.Array, name: int) -> jax.Array:
  """The key of stream `name` (one of the constants above) of base key `key`."""
  return jax.random.fold_in(key, name)
