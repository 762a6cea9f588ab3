"""A run's training state: both networks, both Adam states, the EMA generator, the
step, the epoch and the base key, as one pytree that checkpoints whole; and where a
run starts: fresh (its initial weights come from config.seed alone) or from its
newest checkpoint. Also the optimisers that update it (Adam with the learning-rate
schedule) and what it gives sampling: the generator variables of each epoch's sampler
checkpoint (sampler_variables)."""

from __future__ import annotations

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from spect_fastgan_jax import checkpoints, conditions, models, preflight, rng, sharding

Array = jax.Array
PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything needed to resume, as one pytree (checkpointed as a whole)."""
  step: Array          # int32, steps taken
  epoch: Array         # int32, full epochs completed
  key: Array           # uint32 [2], the run's base key (raw key data serialises); rng.py
  g_params: PyTree
  g_stats: PyTree      # G's BatchNorm running statistics and spectral-norm vectors
  d_params: PyTree
  d_stats: PyTree
  g_opt: PyTree
  d_opt: PyTree
  ema_params: PyTree   # EMA of G's weights; {} when config.optim.ema_decay == 0


def lr_factor(epoch: Array, num_epochs: int, decay_epochs: int) -> Array:
  """Both learning rates' multiplier in the epoch after `epoch` full ones: 1, then over
  the last `decay_epochs` epochs falling linearly, (num_epochs - epoch) / decay_epochs,
  to 1 / decay_epochs in the last epoch. It follows `num_epochs` as given, so a run
  resumed to a longer schedule goes back to the full rate until its new decay starts."""
  left = (num_epochs - epoch).astype(jnp.float32)
  return jnp.clip(left / decay_epochs, 1.0 / decay_epochs, 1.0)


def _with_epoch_schedule(adam: optax.GradientTransformation, num_epochs: int,
                         decay_epochs: int) -> optax.GradientTransformationExtraArgs:
  """`adam` whose updates are scaled by lr_factor of the `epoch` passed to update.
  Adam's step is linear in its learning rate, so this is the scheduled rate with the
  moment estimates as they are; the state is Adam's own, so checkpoints keep one
  layout whatever the schedule."""

  def update(updates, state, params=None, *, epoch=None, **extra_args):
    del extra_args
    updates, state = adam.update(updates, state, params)
    if decay_epochs > 0:
      rate = lr_factor(epoch, num_epochs, decay_epochs)
      updates = jax.tree_util.tree_map(lambda u: rate * u, updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(adam.init, update)


def make_optimizers(config) -> tuple[optax.GradientTransformationExtraArgs, ...]:
  """(G's, D's) optimiser: Adam (config.optim) with the learning-rate schedule of
  `optim.lr_decay_epochs` (constant when 0); update(..., epoch=state.epoch)."""
  o, n, decay = config.optim, int(config.num_epochs), int(config.optim.lr_decay_epochs)
  return (_with_epoch_schedule(optax.adam(o.lr_g, b1=o.b1, b2=o.b2), n, decay),
          _with_epoch_schedule(optax.adam(o.lr_d, b1=o.b1, b2=o.b2), n, decay))


def init_variables(config, g: models.Generator, d: models.Discriminator, key: Array):
  """Initial variables of G and D."""
  c = conditions.condition_dim(config.data.levels, conditions.side_conditioned(config.data))
  k_g, k_d = jax.random.split(key)
  z = jnp.zeros((1, config.model.z_dim), jnp.float32)
  y = jnp.zeros((1, c), jnp.float32)
  g_vars = g.init({"params": k_g}, z, y, jax.random.split(k_g, 1), train=False)
  d_vars = d.init({"params": k_d}, jnp.zeros((1, 64, 64, 1)), y, train=False,
                  crop_offsets=jnp.zeros((1, 2), jnp.int32))
  return g_vars, d_vars


def initial_state_fn(config, g, d):
  """key -> the state at step 0 for that key; seeds differ only in it, so one function
  (compiled once) serves every seed of a run."""
  tx_g, tx_d = make_optimizers(config)

  # One compiled program: run op by op, the initialisers and the optimiser states
  # are some 350 small compilations (20 s on a 2 GHz core for the tiny test widths).
  @jax.jit
  def build(key):
    g_vars, d_vars = init_variables(config, g, d, rng.stream(key, rng.INIT))
    return g_vars, d_vars, tx_g.init(g_vars["params"]), tx_d.init(d_vars["params"])

  def init(key) -> TrainState:
    g_vars, d_vars, g_opt, d_opt = build(key)
    return TrainState(
        step=jnp.zeros((), jnp.int32), epoch=jnp.zeros((), jnp.int32), key=key,
        g_params=g_vars["params"], g_stats=g_vars["batch_stats"],
        d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
        g_opt=g_opt, d_opt=d_opt,
        # A copy, not the same arrays: the step donates the state, and one buffer
        # cannot be donated twice.
        ema_params=(jax.tree_util.tree_map(jnp.copy, g_vars["params"])
                    if config.optim.ema_decay > 0 else {}))

  return init


def create_train_state(config, g, d) -> TrainState:
  """The state at step 0, from `config.seed`."""
  return initial_state_fn(config, g, d)(jax.random.PRNGKey(config.seed))


# ----------------------------------------------------------------------------
# What a training state gives sampling (written as each epoch's sampler checkpoint).
# ----------------------------------------------------------------------------
def sampler_variables(state, config, g, train_cond: jax.Array, weight: jax.Array | None = None) -> dict:
  """Generator variables for sampling from a training state (train_state.TrainState):
  weights and the statistics that fit them.

  With an EMA generator the running BatchNorm statistics of the raw weights do
  not fit the averaged weights, so they are recomputed for the EMA weights, on
  conditions drawn as often as training drew them: rows of `train_cond` [N, C], the
  training set's condition vectors, at probabilities `weight` [N] if training drew
  them so (input_pipeline.DeviceData.weight), else uniformly.
  """
  if config.optim.ema_decay > 0:
    stats = recompute_batch_stats(g, state.ema_params, state.g_stats, config, train_cond,
                                  rng.stream(state.key, rng.SAMPLER_STATS), weight=weight)
    return {"params": state.ema_params, "batch_stats": stats}
  return {"params": state.g_params, "batch_stats": state.g_stats}


def make_sampler_fn(config, g) -> Callable:
  """Jitted (state, train_cond, weight) -> sampler_variables(state, config, g, train_cond, weight).

  Compiled once per run: run eagerly, the EMA statistics' scan is traced and
  compiled again at every call, 8-16 s per epoch at the CPU schedule's widths.
  """
  return jax.jit(lambda state, train_cond, weight=None: sampler_variables(state, config, g, train_cond,
                                                                        weight))


def recompute_batch_stats(g, params, stats, config, train_cond, key, batches: int = 50,
                          batch: int = 32, weight=None):
  """Runs G in training mode on `batches` random batches so that its BatchNorm
  running statistics (momentum 0.9: 0.9**50 < 1%) describe `params`. Conditions
  are rows of `train_cond` drawn uniformly (or at probabilities `weight`), i.e. at the
  training frequencies (no condition the data lacks). The spectral-norm vectors are
  kept as they are."""
  conds = jnp.asarray(train_cond)

  def body(s, k):
    k_z, k_c, k_n = jax.random.split(k, 3)
    z = jax.random.normal(k_z, (batch, config.model.z_dim))
    rows = (jax.random.randint(k_c, (batch,), 0, conds.shape[0]) if weight is None
            else jax.random.choice(k_c, conds.shape[0], (batch,), p=weight))
    y = conds[rows]
    _, upd = g.apply({"params": params, "batch_stats": s}, z, y, jax.random.split(k_n, batch),
                     train=True, mutable=["batch_stats"])
    return batch_norm_only(s, upd["batch_stats"]), None

  out, _ = jax.lax.scan(body, stats, jax.random.split(key, batches))
  return out


def batch_norm_only(old, new):
  """The statistics `new` for BatchNorm's running mean and variance, `old` for everything
  else in the collection (the spectral-norm vectors): a refit of BatchNorm alone."""
  flat_old = flax.traverse_util.flatten_dict(old)
  return flax.traverse_util.unflatten_dict({
      p: (v if p[-1] in ("mean", "var") else flat_old[p])
      for p, v in flax.traverse_util.flatten_dict(new).items()})


def restore_or_init(runs, ckpts, g, d, sampler_fn, data, mesh, log) -> tuple[int | None, list]:
  """The states a run goes on from: (last epoch or None, [TrainState per seed]).

  Args:
    runs: [(config, workdir)] of each seed (workdir.seed_runs).
    ckpts: their checkpoints.RunCheckpoints.
    g, d: the networks.
    sampler_fn: (state, train_cond, weight) -> sampler variables (train_state.make_sampler_fn).
    data, mesh: the device data and mesh (for a sampler checkpoint written again).
    log: one-line messages.
  Returns:
    The newest epoch every seed has restored, with the states; or (None, fresh states).
    Restore targets are `jax.eval_shape` shapes, so no state is built only to be
    replaced. A seed's missing sampler checkpoint of that epoch (a run killed between
    the epoch's two saves) is written again here.
  """
  config = runs[0][0]
  target = jax.eval_shape(lambda: create_train_state(config, g, d))  # the same for every seed
  restored = [ck.restore_latest(target, log) for ck in ckpts]
  lasts = [e for e, _ in restored]
  if len(set(lasts)) > 1:
    # Seeds train in one program, so they must stand at the same epoch.
    if None in lasts:
      log("warning: some seeds have no checkpoint; all seeds start from epoch 0")
      lasts = [None] * len(runs)
    else:
      log(f"seeds stand at epochs {lasts}; all resume from epoch {min(lasts)}")
      restored = [(min(lasts), ck.restore_train(min(lasts), target)) for ck in ckpts]
      lasts = [min(lasts)] * len(runs)
  last = lasts[0]
  # Room for every checkpoint the epochs still to train leave (seeds share a disk),
  # before any is written; a sampler checkpoint holds G's weights and statistics.
  preflight.check_checkpoint_space(
      runs[0][1], (last or 0) + 1, config.checkpoint, config.num_epochs,
      preflight.tree_bytes((target.g_params, target.g_stats)), preflight.tree_bytes(target), len(runs))
  if last is None:
    init = initial_state_fn(config, g, d)
    return None, [init(jax.random.PRNGKey(c.seed)) for c, _ in runs]
  states = [st for _, st in restored]
  every = config.checkpoint.sampler_every_epochs
  for (_, w), ck, st in zip(runs, ckpts, states):
    if checkpoints.due(last, every, config.num_epochs) and not ck.has_sampler(last):
      log(f"writing the missing sampler checkpoint of epoch {last} in {w}")
      ck.save(last, None, sampler_fn(sharding.replicate(st, mesh), data.cond, data.weight))
  return last, states
