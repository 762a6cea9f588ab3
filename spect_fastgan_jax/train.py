"""Training: the epochs of a run on device-resident data, and the run around them.

The paper's steps (i)-(vi) are one `train_step` (step.py). An epoch draws a fresh
permutation on device (input_pipeline.py) and runs its steps either as one compiled
`lax.scan` (GPU/TPU: no host round trip per step) or as a host loop over the jitted
step (CPU, where XLA runs loop bodies far slower; see `resolve_train_loop`). `train`
runs the epochs, writes each epoch's checkpoints and logs, and resumes a run from its
newest checkpoint.

Phases, in the order of this file: config, the epoch, the run. The state it updates
and resumes is train_state.py; the data it draws, input_pipeline.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from spect_fastgan_jax import augment as augment_lib
from spect_fastgan_jax import (checkpoints, conditions, input_pipeline, losses, models, preflight,
                               outputs, runlog, sample, sharding)
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.data.source import Split, split_holdout
from spect_fastgan_jax.errors import ConfigError, RunError, check_field, is_number, is_whole
from spect_fastgan_jax import step as step_lib
from spect_fastgan_jax import train_state
from spect_fastgan_jax.train_state import TrainState, restore_or_init

Array = jax.Array

METRICS = ("d_real", "d_fake", "recon", "g")


# ----------------------------------------------------------------------------
# Config: the trainer's own fields here; each other block by the module that uses it.
# ----------------------------------------------------------------------------
def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first bad field of a training config."""
  for f in ("batch_size", "num_epochs", "num_seeds"):
    check_field(is_whole(config[f]) and config[f] >= 1, f, config[f], "must be a whole number >= 1")
  o = config.optim
  for f in ("lr_g", "lr_d"):
    check_field(is_number(o[f]) and math.isfinite(o[f]) and o[f] > 0, f"optim.{f}", o[f],
                "must be a positive number")
  for f in ("b1", "b2", "ema_decay"):
    check_field(is_number(o[f]) and 0 <= o[f] < 1, f"optim.{f}", o[f], "must be in [0, 1)")
  check_field(isinstance(o.ema_warmup, bool), "optim.ema_warmup", o.ema_warmup, "must be True or False")
  v = o.lr_decay_epochs
  check_field(is_whole(v) and 0 <= v <= config.num_epochs, "optim.lr_decay_epochs", v,
              f"must be a whole number in [0, num_epochs = {config.num_epochs}]")
  v = config.loss.mode_seeking_pairs
  check_field(is_whole(v) and 0 <= v <= config.batch_size, "loss.mode_seeking_pairs", v,
              f"must be a whole number in [0, batch_size = {config.batch_size}]")
  resolve_train_loop(config.get("train_loop", "auto"))
  conditions.check_levels(config.data.levels)
  input_pipeline.check_config(config.data)
  models.from_config(config.model)
  augment_lib.check_config(config.augment)
  check_field(not (config.augment.get("flip_unilateral", False) is True and config.augment.flip
                   and conditions.side_conditioned(config.data)),
              "augment.flip_unilateral", True, "must be False in a side-conditioned run "
              "(data.condition_side=True): a flip would move a unilateral defect to the side "
              "its condition does not ask for")
  losses.check_config(config.loss)
  runlog.check_config(config.log)
  checkpoints.check_config(config.checkpoint)
  # num_devices, and whether the batch splits over them (all processes' devices).
  sharding.make_mesh(config.num_devices, config.batch_size)


def networks(config: ml_collections.ConfigDict) -> tuple[models.Generator, models.Discriminator]:
  """G and D as training builds them: D with the auxiliary condition head when
  config.loss.condition_aux > 0."""
  return models.from_config(config.model, aux_head=float(config.loss.condition_aux) > 0)


def resolve_train_loop(kind: str, backend: str | None = None) -> str:
  """'scan' or 'steps' for config field `train_loop` ('auto' picks by backend).

  On GPU/TPU an epoch is one compiled `lax.scan`: no host round trip per step.
  XLA:CPU runs the convolutions of a loop body far slower than the same ops in
  a plain jitted step (about 15-25x, benchmarks/train_speed.py --train_loop), so
  on CPU the epoch is a host loop over one jitted, donated step; data, keys and
  the permutation still live on the device.
  """
  check_field(kind in ("auto", "scan", "steps"), "train_loop", kind, "must be 'auto', 'scan' or 'steps'")
  if kind == "auto":
    return "steps" if (backend or jax.default_backend()) == "cpu" else "scan"
  return kind


# ----------------------------------------------------------------------------
# The epoch.
# ----------------------------------------------------------------------------
def make_train_epoch(config, g, d, num_slices: int, train_loop: str | None = None,
                     mesh=None, num_seeds: int = 1) -> Callable:
  """Returns train_epoch(state, data) -> (state, metrics [steps]) that donates `state`.

  Both loop kinds draw the same batches and keys, so they train the same run.
  With a `mesh` of several devices each batch is split over its 'data' axis.
  With `num_seeds` > 1 the state has a leading seed axis and the seeds train side
  by side in one program (vmap), each with its own key, batches and weights;
  metrics are then [steps, num_seeds].
  """
  step = step_lib.make_train_step(config, g, d)
  split = sharding.batch_splitter(mesh)
  loop = resolve_train_loop(train_loop or config.get("train_loop", "auto"))
  epoch_order = lambda state, data: input_pipeline.epoch_order(
      state.key, state.epoch, num_slices, config.batch_size, data.weight)

  def step_on_batch(state: TrainState, batch: input_pipeline.Batch):
    return step(state, jax.tree_util.tree_map(split, batch), jax.random.fold_in(state.key, state.step))

  if num_seeds > 1:
    one_seed_order = epoch_order
    # [seeds, steps, b] -> [steps, seeds, b]: the loops below run over steps.
    epoch_order = lambda state, data: jnp.swapaxes(
        jax.vmap(one_seed_order, in_axes=(0, None))(state, data), 0, 1)
    step_on_batch = jax.vmap(step_on_batch)

  if loop == "scan":
    def train_epoch(state: TrainState, data: input_pipeline.DeviceData):
      state, metrics = jax.lax.scan(lambda s, idx: step_on_batch(s, input_pipeline.gather(data, idx)),
                                    state, epoch_order(state, data))
      return state.replace(epoch=state.epoch + 1), metrics
    # The old state is dead once the new one exists: donating it lets XLA update
    # the parameters and optimizer moments in place.
    return jax.jit(train_epoch, donate_argnums=0)

  # The step sees only its batch, so one compiled step serves data sets of any size.
  order_fn = jax.jit(epoch_order)
  gather_fn = jax.jit(lambda data, order, i: input_pipeline.gather(data, order[i]))
  step_fn = jax.jit(step_on_batch, donate_argnums=0)
  finish_fn = jax.jit(lambda state: state.replace(epoch=state.epoch + 1), donate_argnums=0)

  def train_epoch_steps(state: TrainState, data: input_pipeline.DeviceData):
    order, collected = order_fn(state, data), []
    for i in range(input_pipeline.steps_per_epoch(num_slices, config.batch_size)):
      state, m = step_fn(state, gather_fn(data, order, jnp.int32(i)))
      collected.append(m)
    return finish_fn(state), _stack(collected)

  return train_epoch_steps


# ----------------------------------------------------------------------------
# The run.
# ----------------------------------------------------------------------------
def train(config: ml_collections.ConfigDict, workdir: str,
          dataset: SliceDataset | Split | Callable[[], SliceDataset | Split],
          log: Callable[[str], None] = runlog.to_stderr,
          should_stop: Callable[[], bool] = lambda: False) -> TrainState:
  """Trains (or resumes) a run in `workdir`.

  Args:
    config: a training config (configs/); checked first, before any work.
    workdir: where the run lives (workdir.py); one with training checkpoints resumes
      from the newest, a finished one says so and returns.
    dataset: every slice of the run's levels (a SliceDataset, split here by config fields
      data.holdout_fraction/holdout_seed) or a Split already made by data.load_split; or a
      function that loads either (called once the config, devices and workdir are checked,
      so a bad config fails before a long load). Only the training subjects reach G and D,
      the monitor and the checkpoints; <workdir>/subjects.json records both lists.
    log: one-line messages for the user.
    should_stop: asked after each epoch's checkpoint (launch.py sets it on Ctrl-C):
      True ends the run there, to be resumed later.
  Returns:
    The final state; with `num_seeds` > 1 it has a leading seed axis.

  In a job of several processes (docs/multihost.md) every process calls this with the
  same arguments; only process 0 writes the run record, logs, grids and progress.
  """
  # --- Config, devices, workdirs and data. ---
  writer = jax.process_index() == 0
  log = log if writer else (lambda msg: None)
  check_config(config)
  mesh = sharding.make_mesh(config.num_devices, config.batch_size, log)
  runs = workdir_lib.seed_runs(config, workdir)
  for c, w in runs:
    saved = workdir_lib.read_run_config(w)
    if saved is not None:
      workdir_lib.check_resumable(saved, c)
  dataset = dataset() if callable(dataset) else dataset
  split = dataset if isinstance(dataset, Split) else split_holdout(dataset, config.data)
  dataset, subjects = split.train, split.subjects()
  for _, w in runs:
    workdir_lib.check_same_subjects(w, subjects)
  levels = conditions.check_levels(config.data.levels)
  if len(dataset) < config.batch_size:
    raise ConfigError(f"config field batch_size ({config.batch_size}) is larger than the data set "
                      f"({len(dataset)} slices)")
  # Before any folder is made: data that cannot be encoded (a unilateral slice without
  # a side for a side-conditioned run), or whose uneven sides a unilateral flip would
  # even out, is refused with nothing written.
  sided = conditions.side_conditioned(config.data)
  step_config, derived = augment_lib.with_resolved_flip(config, sided, dataset, log)
  data = input_pipeline.device_data(dataset, levels, float(config.data.condition_balance), sided,
                                    augment_lib.flips_unilateral(step_config.augment))
  # The blend's share where augment.blend_mc_excess derives it from these slices.
  step_config, derived = augment_lib.with_blend_share(step_config, np.asarray(data.slices), derived, log)
  data = sharding.replicate(data, mesh)
  for _, w in runs:
    # Creates w and proves it writable before the compile: an unwritable or full
    # workdir stops here with one line and nothing written.
    preflight.check_writable(w)
  g, d = networks(config)
  num_seeds, n = len(runs), len(dataset)
  # Seeds differ only in their key, which the state carries: one function serves all.
  sampler_fn = train_state.make_sampler_fn(config, g)

  # --- State: fresh or resumed. ---
  ckpts = [checkpoints.RunCheckpoints(w, config.checkpoint.keep_train_states) for _, w in runs]
  try:
    last, states = restore_or_init(runs, ckpts, g, d, sampler_fn, data, mesh, log)
    stacked = states[0] if num_seeds == 1 else _stack(states)
    if last is not None:
      for _, w in runs:
        if writer:
          workdir_lib.truncate_metrics(w, last)
      if last >= config.num_epochs:
        log(f"run in {workdir} is finished: epoch {last} of {config.num_epochs} is saved; "
            "nothing to do (raise --config.num_epochs to train on)")
        return stacked
      log(f"resuming {workdir} from epoch {last} (step {int(states[0].step)})")
    for c, w in runs:
      if writer:
        workdir_lib.write_run_config(w, c, dataset, derived)
        workdir_lib.write_subjects(w, subjects)
    state = sharding.replicate(stacked, mesh)
    first_epoch = (last or 0) + 1
    log(f"training on {n} slices ({', '.join(levels)}), condition "
        f"{conditions.condition_names(levels, sided)}, "
        f"{input_pipeline.steps_per_epoch(n, config.batch_size)} steps of batch {config.batch_size} "
        f"per epoch, epochs {first_epoch}..{config.num_epochs}"
        + (f", {num_seeds} seeds" if num_seeds > 1 else "")
        + (f", batch split over {mesh.size} devices" if mesh.size > 1 else ""))

    # --- Epochs. ---
    train_epoch = make_train_epoch(step_config, g, d, n, mesh=mesh, num_seeds=num_seeds)
    log("compiling the training step (about a minute on a CPU) ...")
    logs = [runlog.RunLog(w, config.log.tensorboard) if writer else None for _, w in runs]
    monitor = None
    if config.log.monitor_every_epochs and writer:
      from spect_fastgan_jax.evaluation import monitor as monitor_lib
      monitor = monitor_lib.Monitor(step_config, runs[0][1], dataset, g,
                                    int(config.log.monitor_per_condition), log)
    progress = runlog.Progress(config, first_epoch, METRICS, show=writer)
    end_epoch = _EpochEnd(sampler_fn, data, monitor, g, log)
    # Each seed's grids sample as its run's readers will: with what training derived.
    outs = [_SeedOutputs(workdir_lib.with_derived(c, derived), w, ck, rl, f" (seed {c.seed})" if num_seeds > 1 else "")
            for (c, w), ck, rl in zip(runs, ckpts, logs)]
    try:
      for epoch in range(first_epoch, config.num_epochs + 1):
        t0 = time.perf_counter()
        state, metrics = train_epoch(state, data)
        means = jax.device_get(jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), metrics))
        per_seed = [{k: float(v if num_seeds == 1 else v[i]) for k, v in means.items()}
                    for i in range(num_seeds)]
        _check_finite(epoch, runs, per_seed)
        seconds = time.perf_counter() - t0
        for i, (out, m) in enumerate(zip(outs, per_seed)):
          m["epoch_seconds"] = seconds
          end_epoch(out, epoch, state if num_seeds == 1 else _unstack(state, i), m)
        progress.update(epoch, per_seed[0])
        if sharding.any_process(should_stop()) and epoch < config.num_epochs:
          log(f"\nstopped after epoch {epoch}, whose checkpoint is saved; rerun the same command "
              "to resume")
          break
    finally:
      progress.close()
      for rl in logs:
        if rl is not None:
          rl.close()
    return state
  finally:
    # Async saves must land before the process may exit.
    for ck in ckpts:
      ck.close()


def _check_finite(epoch: int, runs, per_seed) -> None:
  for (c, _), m in zip(runs, per_seed):
    if not all(math.isfinite(v) for v in m.values()):
      raise RunError(
          f"non-finite loss in epoch {epoch} (seed {c.seed}: {', '.join(f'{k}={v}' for k, v in m.items())}); "
          f"the run stopped. The last good checkpoint is epoch {epoch - 1}; try a lower learning rate "
          "(config fields optim.lr_g, optim.lr_d)")


@dataclasses.dataclass
class _SeedOutputs:
  """Where one seed's epochs go."""
  config: ml_collections.ConfigDict
  workdir: str
  ckpt: checkpoints.RunCheckpoints
  run_log: runlog.RunLog | None     # None off process 0, which alone writes logs
  tag: str                          # names the seed in warnings when several train


@dataclasses.dataclass
class _EpochEnd:
  """The end of an epoch for one seed, with what every seed shares: checkpoints, then
  (process 0) monitor scores, the log line and the sample grid."""
  sampler_fn: Callable
  data: input_pipeline.DeviceData
  monitor: object                   # evaluation.monitor.Monitor, or None
  g: models.Generator
  log: Callable[[str], None]

  def __call__(self, out: _SeedOutputs, epoch: int, state: TrainState, metrics: dict) -> None:
    config = out.config
    every = lambda n: checkpoints.due(epoch, n, config.num_epochs)
    make_sampler = lambda: self.sampler_fn(state, self.data.cond, self.data.weight)
    sampler = make_sampler() if every(config.checkpoint.sampler_every_epochs) else None
    out.ckpt.save(epoch, state, sampler)
    want_grid, want_monitor = every(config.log.sample_every_epochs), every(config.log.monitor_every_epochs)
    if (want_grid or want_monitor) and sampler is None:
      sampler = make_sampler()
    if out.run_log is None:  # not process 0
      return
    if sampler is not None and jax.process_count() > 1:
      sampler = jax.device_get(sampler)  # process 0 alone computes with it: a host copy
    if want_monitor:
      scores = self.monitor(sampler)
      metrics.update({f"monitor/{k}": v for k, v in scores.items()})
      warning = self.monitor.warning(scores)
      if warning:
        self.log(f"\nepoch {epoch}{out.tag}: warning: {warning}")
    out.run_log.write(epoch, metrics)
    if want_grid:
      grid = sample.condition_grid(self.g, sampler, config, per_condition=4, seed=0)
      outputs.save_png(grid, os.path.join(out.workdir, "samples_during_training", f"epoch_{epoch:04d}.png"))
      out.run_log.image(epoch, "samples", grid)


def _stack(trees):
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def _unstack(tree, i):
  return jax.tree_util.tree_map(lambda x: x[i], tree)
