"""The run's named PRNG key streams.

Every random draw of a run derives from one base key, `PRNGKey(config.seed)`, which
the training state carries (TrainState.key). Each use folds in its own constant:

  step s             fold_in(key, s), s = 0, 1, ... (augmentation, z, noise, crops)
  INIT               the networks' initial weights
  EPOCH_ORDER        then fold_in(., epoch): the permutation of each epoch
  SAMPLER_STATS      the BatchNorm statistics refitted for an EMA generator

A sample drawn after training has its own stream, `fold_in(PRNGKey(seed), index)`
(sample.sample_keys), independent of the training key.

The constants are those the first runs used, so every documented run reproduces.
They share the integers of the step stream: INIT is step 1's key and SAMPLER_STATS
step 3642's, and with JAX's partitionable threefry a 2-way split equals the first two
keys of a 5-way one. So the initial weights of G and D come from the same keys as
step 1's augmentation and latent vectors, and the EMA statistics refit from the same
keys as step 3642's draws. The draws are of different things (weights vs blend
factors, statistics batches vs a training batch), so no measured result depends on
it; a new stream should take a constant the step count never reaches (>= 2**31).
"""

import jax

INIT = 1
EPOCH_ORDER = 0x0E0C
SAMPLER_STATS = 0xE3A


def stream(key: jax.Array, name: int) -> jax.Array:
  """The key of stream `name` (one of the constants above) of base key `key`."""
  return jax.random.fold_in(key, name)
