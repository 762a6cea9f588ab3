"""Command line of spect-fastgan-jax.

  python launch.py --config=configs/dataset_a.py                 # train (resumes if checkpoints exist)
  python launch.py --mode=sample --epoch=826                      # generate from a chosen epoch
  python launch.py --mode=sample --epoch=826 --reject_near_copies # ... without near-copies of training slices
  python launch.py --mode=simulate                                # write the simulated dataset.npz
  python launch.py --mode=select --select_every=10                # score saved epochs, name the best
  python launch.py --mode=evaluate                                # fidelity report (epoch: select's best)
  python launch.py --mode=evaluate --epoch=826 --compare_workdir=runs/dataset_b --compare_epoch=651
  python launch.py --mode=augment --balance --out=balanced      # real + synthetic slices, manifest, card

Any config field can be overridden: --config.num_epochs=5 --config.data.manifest=scans.csv

Several hosts train one run with one command per host (docs/multihost.md), e.g. on two:
  python launch.py --distributed --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0 ...
  python launch.py --distributed --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=1 ...
"""

import os
import signal
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(_HERE, "configs", "dataset_a.py"), "Config file (configs/*.py).",
    lock_config=True)
_MODE = flags.DEFINE_enum("mode", "train", ["train", "sample", "simulate", "evaluate", "select", "augment"],
                         "What to do.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run folder (default: runs/<config file stem>[_<variant>]).")
_EPOCH = flags.DEFINE_integer("epoch", None, "Epoch to sample from, evaluate or augment with (default: the "
                               "newest; evaluate, augment: the best of the newest --mode=select, else "
                               "the newest).")
_NUM = flags.DEFINE_integer("num_per_condition", None,
                            "Images per condition (default: as many as the real data, Table 1).")
_COMPARE_WORKDIR = flags.DEFINE_string("compare_workdir", None,
                                       "evaluate: a second run shown beside the first (the paper's A vs B).")
_COMPARE_EPOCH = flags.DEFINE_integer("compare_epoch", None, "evaluate: epoch of --compare_workdir.")
_SELECT_EVERY = flags.DEFINE_integer("select_every", 10, "select: score every k-th saved epoch (and the last).")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: this process is one of several that train one run together "
    "(jax.distributed.initialize, before anything else; docs/multihost.md). Needs the three flags "
    "below, their environment variables, or a SLURM / Open MPI job.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "--distributed: HOST:PORT of process 0 and a free port, the same for "
    "every process (default: $JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "--distributed: how many processes train the run (default: $JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "--distributed: this process's number, 0..num_processes-1; process 0 writes "
    "the run's records, logs and grids (default: $JAX_PROCESS_ID).")
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout", 300, "--distributed: seconds to wait for every process to join before "
    "giving up with an error.")
_REJECT = flags.DEFINE_bool(
    "reject_near_copies", False, "sample, augment: drop images closer to a training slice than the "
    "memorisation audit's near-copy threshold (docs/memorisation.md) and draw further sample "
    "indices in their place; info.json records what was dropped. Off by default for sample, on "
    "for augment (--noreject_near_copies turns it off).")
_SIDE = flags.DEFINE_string(
    "side", None, "sample: draw every unilateral defect on this side (left or right); a "
    "side-conditioned run (--config.data.condition_side=True) only. Default: left and right in turn.")
_OUT = flags.DEFINE_string("out", None, "augment: the folder to write, which must not exist yet.")
_BALANCE = flags.DEFINE_bool("balance", False, "augment: bring every condition up to the largest "
                             "real count with synthetic slices.")
_PER_CONDITION = flags.DEFINE_integer("per_condition", None, "augment: bring every condition up to N "
                                      "slices (real ones are never dropped).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace earlier outputs of the same epoch and seed.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Checkpointing libraries log every save at INFO; keep the terminal for what matters.
  logging.set_verbosity(logging.WARNING)
  cluster_flags = [f"--{f.name}" for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID) if f.value is not None]
  if cluster_flags and not _DISTRIBUTED.value:
    _fail(f"{', '.join(cluster_flags)} given without --distributed")
  if _DISTRIBUTED.value and _MODE.value != "train":
    _fail(f"--distributed is for --mode=train; --mode={_MODE.value} runs in one process")
  if _DISTRIBUTED.value:
    from spect_fastgan_jax import distributed
    try:
      distributed.initialize(
          distributed.cluster_settings(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                       os.environ),
          _DISTRIBUTED_TIMEOUT.value, on_timeout=_fail_now)
    except distributed.ClusterError as e:
      _fail(str(e))
  if _SIDE.value is not None and _MODE.value != "sample":
    _fail(f"--side is for --mode=sample; --mode={_MODE.value} takes no side")
  augment_flags = [f"--{f.name}" for f in (_OUT, _PER_CONDITION) if f.value is not None]
  augment_flags += ["--balance"] if _BALANCE.value else []
  if augment_flags and _MODE.value != "augment":
    _fail(f"{', '.join(augment_flags)} given for --mode={_MODE.value}; they are for --mode=augment")
  from spect_fastgan_jax import errors, modes
  config = _CONFIG.value
  workdir = _WORKDIR.value or modes.default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  try:
    if _MODE.value == "train":
      stop = _StopAfterEpoch()
      modes.train(config, workdir, should_stop=stop)
      if stop.requested:
        sys.exit(130)
    elif _MODE.value == "sample":
      modes.sample(config, workdir, _EPOCH.value, _NUM.value, _OVERWRITE.value, _REJECT.value,
                   side=_SIDE.value)
    elif _MODE.value == "simulate":
      modes.simulate(config, workdir)
    elif _MODE.value == "evaluate":
      modes.evaluate(config, workdir, _EPOCH.value, _COMPARE_WORKDIR.value, _COMPARE_EPOCH.value,
                     _OVERWRITE.value)
    elif _MODE.value == "select":
      modes.select(config, workdir, _SELECT_EVERY.value, _OVERWRITE.value)
    elif _MODE.value == "augment":
      reject = _REJECT.value if flags.FLAGS[_REJECT.name].present else True
      modes.augment(config, workdir, _OUT.value, _EPOCH.value, _BALANCE.value, _PER_CONDITION.value,
                    near_copy_filter=reject)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except KeyboardInterrupt:
    print("\ninterrupted: checkpoints already complete are kept; rerun the same command to resume",
          file=sys.stderr)
    sys.exit(130)


def _parse_flags(argv):
  """absl's flag parsing, but a config file that fails to load (an unknown variant,
  a bad get_config argument) is one line naming it, exit 1, without the traceback
  ml_collections puts in the message."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    if str(e).startswith(f"flag --{_CONFIG.name}="):
      cause = e  # ml_collections re-raises get_config's error with a traceback as its text
      while cause.__cause__ or cause.__context__:
        cause = cause.__cause__ or cause.__context__
      value = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{_CONFIG.name}=")), "")
      from spect_fastgan_jax import errors
      _fail(str(errors.ConfigError(f"--{_CONFIG.name}={value}: {(str(cause).splitlines() or [''])[0]}")))
  return app.parse_flags_with_usage(argv)  # absl's own message for any other bad flag


def _fail(message: str):
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(1)


def _fail_now(message: str):
  """From a watchdog thread, where sys.exit would end only the thread."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  os._exit(1)


class _StopAfterEpoch:
  """Ctrl-C once: finish the current epoch and its checkpoint, then stop. Twice: stop now."""

  def __init__(self):
    self.requested = False
    signal.signal(signal.SIGINT, self._on_sigint)

  def _on_sigint(self, signum, frame):
    if self.requested:
      raise KeyboardInterrupt
    self.requested = True
    print("\nCtrl-C: stopping after the current epoch and its checkpoint (Ctrl-C again to stop now)",
          file=sys.stderr, flush=True)

  def __call__(self) -> bool:
    return self.requested


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
