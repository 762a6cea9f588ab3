"""The package's errors: one hierarchy, with `UserError` at its root.

A `UserError` is something the user can fix (a bad config value, a corrupt or
mislabelled scan, a missing epoch, a workdir that cannot take the run); its message
names the field, file, row or epoch at fault. launch.py prints it as one line and
exits with status 1. Any other exception is a bug and shows its traceback.

Each class also derives from the built-in error of its kind (ValueError for bad
values, RuntimeError for a run that cannot go on, FileNotFoundError,
FileExistsError, OSError).
"""


class UserError(Exception):
  """An error the user can fix; the message says what and where."""


class ConfigError(UserError, ValueError):
  """A config field, flag or argument with a bad value; the message names it."""


class DataError(UserError, ValueError):
  """Bad input data; the message names the file, row or field at fault."""


class ClusterError(UserError, ValueError):
  """Cluster settings that are missing, inconsistent, or a peer that never joined."""


class RunError(UserError, RuntimeError):
  """A run that cannot go on: it differs from the run being resumed, or its loss
  became non-finite; the message says why."""


class CheckpointError(RunError):
  """A checkpoint that is missing or cannot be read; the message names the epoch."""


class PreflightError(CheckpointError):
  """The workdir cannot take the run's files; the message names the folder and why."""


class MissingRunError(UserError, FileNotFoundError):
  """A workdir that holds no trained run."""


class OutputExistsError(UserError, FileExistsError):
  """An output folder that exists and would be replaced without --overwrite."""


class OutputError(UserError, OSError):
  """A file or folder that cannot be written (no permission, read-only or full disk);
  the message names it."""


class ConditionError(UserError, ValueError):
  """A level or pattern a run does not know or was not trained on; the message names
  it and the known ones."""


def check_field(ok: bool, field: str, value, what: str) -> None:
  """Raises ConfigError "config field <field> <what>, got <value>" unless `ok`."""
  if not ok:
    raise ConfigError(f"config field {field} {what}, got {value!r}")


def is_whole(v) -> bool:
  """A whole number (True/False are ints in Python, never a sensible count here)."""
  return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
  """A real number, not a bool."""
  return isinstance(v, (int, float)) and not isinstance(v, bool)
