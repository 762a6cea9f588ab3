"""What each `launch.py --mode` does, as plain functions of (config, workdir, options).

Errors a user can fix (bad config value, bad input file, missing epoch) are raised
as `errors.UserError` subclasses with a message that names the field, file or epoch;
launch.py prints them without a traceback and exits non-zero. Any other exception
is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from typing import Callable

import ml_collections

from spect_fastgan_jax import checkpoints, runlog, workdir as workdir_lib
from spect_fastgan_jax.errors import CheckpointError, ConfigError


def default_workdir(config_path: str) -> str:
  """runs/<config file stem>[_<variant>], e.g. runs/dataset_a, or runs/dataset_a_cpu
  for configs/dataset_a.py:cpu."""
  path, _, variant = config_path.partition(":")
  stem = os.path.splitext(os.path.basename(path))[0]
  return os.path.join("runs", f"{stem}_{variant}" if variant else stem)


def run_config(config: ml_collections.ConfigDict, workdir: str,
               log: Callable[[str], None] = lambda m: None) -> ml_collections.ConfigDict:
  """The config a trained run was made with, with the `sample` block (and the
  evaluation blocks) taken from `config`; the model must match its checkpoints.
  Where that changes the run's own `sample.symmetric_flip` (a recipe run sampled with
  another variant's config, or none), `log` says so: its normals then lose the symmetry
  their training gave them, and the paper's LR test with it."""
  from spect_fastgan_jax import sample as sample_lib
  saved = workdir_lib.require_run_config(workdir)
  own_flip = sample_lib.symmetric_flip(saved)
  for block in ("sample", "evaluate"):
    if block in config:
      saved[block] = config[block]
  if sample_lib.symmetric_flip(saved) != own_flip:
    log(f"note: the run in {workdir} was trained with sample.symmetric_flip={own_flip}, and the "
        f"--config given says {not own_flip}: sampling as --config says (give the run's own "
        "config, e.g. --config=configs/dataset_a.py:cpu, to sample as its recipe does)")
  return saved


def train(config, workdir: str, log: Callable[[str], None] = runlog.to_stderr,
          should_stop: Callable[[], bool] = lambda: False) -> None:
  from spect_fastgan_jax import data, train as train_lib
  # The data set loads once the config, devices and workdir have passed their checks.
  train_lib.train(config, workdir, lambda: data.load_split(config.data, log=log), log=log,
                  should_stop=should_stop)


def sample(config, workdir: str, epoch: int | None, num_per_condition: int | None,
           overwrite: bool, reject_near_copies: bool = False, side: str | None = None,
           log: Callable[[str], None] = runlog.to_stderr) -> str:
  from spect_fastgan_jax import sample as sample_lib
  cfg = run_config(config, workdir, log)
  sample_lib.check_side(cfg, side, workdir)
  if epoch is None:
    epochs = checkpoints.sampler_epochs(workdir)
    if not epochs:
      raise CheckpointError(f"no checkpoints in {workdir}: train first")
    epoch = epochs[-1]
    log(f"no --epoch given: using the newest, {epoch}")
  test = info = None
  if reject_near_copies:
    # The reference takes a while: a folder that cannot take the images fails first.
    sample_lib.check_output_dir(sample_lib.output_dir(workdir, epoch, int(cfg.sample.seed)), overwrite)
    reference = _training_set_reference(cfg, _eval_config(config), workdir, log)
    test, info = reference.near_copies, reference.describe()
  return sample_lib.sample_run(cfg, workdir, epoch, num_per_condition=num_per_condition,
                               overwrite=overwrite, side=side, near_copy=test, near_copy_info=info,
                               log=log)


def _training_set_reference(cfg, ecfg, workdir: str, log):
  """The memorisation reference of the slices the run in `workdir` trained on; a
  DataError naming what is missing when they cannot be found or have changed."""
  from spect_fastgan_jax.data import source
  from spect_fastgan_jax.evaluation import memorisation
  ds = workdir_lib.training_split(cfg.data, workdir, "--reject_near_copies", log).train
  log(f"near-copy filter: reference from the run's {len(ds)} training slices ({source.source_name(cfg.data)})")
  return memorisation.near_copy_reference(ds, cfg.augment, ecfg.memorisation, log)


def simulate(config, workdir: str, log: Callable[[str], None] = runlog.to_stderr):
  from spect_fastgan_jax import data
  return data.simulate_to_workdir(config.data, workdir, log=log)


# --- evaluate and select (spect_fastgan_jax/evaluation, docs/evaluation.md) ---

def _eval_config(config):
  """The `evaluate` block of the given config (configs/evaluate.py)."""
  if "evaluate" not in config:
    raise ConfigError("the config has no evaluate block: build it from configs/default.py, whose "
                      "evaluate block is configs/evaluate.py")
  return config.evaluate


def selected_epoch(workdir: str) -> int | None:
  """The best epoch of the newest --mode=select output in the workdir, if any."""
  found = workdir_lib.newest_selection(workdir)
  return None if found is None else found[1].get("best_epoch")


def _choose_epoch(workdir: str, epoch: int | None, log, flag: str) -> int:
  if epoch is not None:
    return epoch
  best = selected_epoch(workdir)
  if best is not None:
    log(f"no {flag} given: using {best}, the best epoch of the newest --mode=select in {workdir}")
    return best
  epochs = checkpoints.sampler_epochs(workdir)
  if not epochs:
    raise CheckpointError(f"no checkpoints in {workdir}: train first")
  log(f"no {flag} given and no --mode=select output: using the newest epoch, {epochs[-1]}")
  return epochs[-1]


def evaluate(config, workdir: str, epoch: int | None = None, compare_workdir: str | None = None,
             compare_epoch: int | None = None, overwrite: bool = False,
             log: Callable[[str], None] = runlog.to_stderr) -> str:
  """--mode=evaluate: report of a run at an epoch (default: select's best, else the newest)
  against its real training slices, optionally beside a second run (the paper's A vs B).
  Writes <workdir>/evaluation/epoch_XXXX_seedS[_vs_...]/report.md; returns that folder."""
  from spect_fastgan_jax import data
  from spect_fastgan_jax.evaluation import classifier, report
  cfg = run_config(config, workdir, log)
  ecfg = _eval_config(config)
  epoch = _choose_epoch(workdir, epoch, log, "--epoch")
  label = os.path.basename(os.path.normpath(workdir))
  runs = [report.RunSpec(label, workdir, cfg, epoch)]
  name = f"epoch_{epoch:04d}_seed{int(ecfg.seed)}"
  if compare_workdir:
    other_cfg = run_config(config, compare_workdir, log)
    other_epoch = _choose_epoch(compare_workdir, compare_epoch, log, "--compare_epoch")
    other = os.path.basename(os.path.normpath(compare_workdir))
    if other == label:
      label, other = f"{label}@{epoch}", f"{other}@{other_epoch}"
      runs[0].label = label
    runs.append(report.RunSpec(other, compare_workdir, other_cfg, other_epoch))
    name += f"_vs_{os.path.basename(os.path.normpath(compare_workdir))}_epoch_{other_epoch:04d}"
  split = data.load_split(cfg.data, log=log)
  workdir_lib.check_same_subjects(workdir, split.subjects())
  out_dir = os.path.join(workdir_lib.evaluation_dir(workdir), name)
  return report.evaluate(runs, split.train, ecfg, out_dir,
                         classifier.cache_dir(workdir), overwrite, log,
                         test=split.holdout if len(split.holdout) else None)


def augment(config, workdir: str, out: str | None, epoch: int | None = None, balance: bool = False,
            per_condition: int | None = None, near_copy_filter: bool = True,
            log: Callable[[str], None] = runlog.to_stderr) -> str:
  """--mode=augment: the run's real training slices and synthetic ones of an epoch
  (default: select's best, else the newest), with manifest.csv, info.json and the model
  card, written to the new folder `out` (augmented_set.py). Returns `out`."""
  from spect_fastgan_jax import augmented_set
  if not out:
    raise ConfigError("--mode=augment needs --out=DIR, a folder that does not exist yet")
  augmented_set.check_request(balance, per_condition)
  cfg = run_config(config, workdir, log)
  epoch = _choose_epoch(workdir, epoch, log, "--epoch")
  return augmented_set.write(cfg, _eval_config(config), workdir, epoch, out, balance=balance,
                             per_condition=per_condition, near_copy_filter=near_copy_filter, log=log)


def select(config, workdir: str, every: int = 10, overwrite: bool = False,
           log: Callable[[str], None] = runlog.to_stderr) -> dict:
  """--mode=select: scores every `every`-th saved epoch (and the last), writes
  <workdir>/evaluation/select_<first>-<last>_every<k>_seedS/ and returns its select.json dict."""
  from spect_fastgan_jax import data
  from spect_fastgan_jax.evaluation import classifier, select as select_lib
  cfg = run_config(config, workdir, log)
  ecfg = _eval_config(config)
  epochs = select_lib.epochs_to_score(checkpoints.sampler_epochs(workdir), every)
  if not epochs:
    raise CheckpointError(f"no checkpoints in {workdir}: train first")
  split = data.load_split(cfg.data, log=log)
  workdir_lib.check_same_subjects(workdir, split.subjects())
  ds = split.train
  name = f"select_{epochs[0]}-{epochs[-1]}_every{every}_seed{int(ecfg.seed)}"
  log(f"scoring {len(epochs)} epochs ({epochs[0]}..{epochs[-1]}, every {every})")
  out_dir = os.path.join(workdir_lib.evaluation_dir(workdir), name)
  return select_lib.select(cfg, workdir, epochs, ds, ecfg, out_dir,
                           classifier.cache_dir(workdir), overwrite, log)
