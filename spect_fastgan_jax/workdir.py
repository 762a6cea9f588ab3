"""A run's workdir: its record (config.json), what a resumption must match, and its layout.

    <workdir>/config.json                the config, training counts and provenance
    <workdir>/metrics.jsonl              one line of losses (and monitor scores) per epoch
    <workdir>/checkpoints/{train,sampler}/<epoch>/   checkpoints.py
    <workdir>/samples_during_training/   grids every log.sample_every_epochs
    <workdir>/samples/, evaluation/      --mode=sample, --mode=evaluate and --mode=select
    <workdir>/seed_<s>/                  each seed's own run when num_seeds > 1

Training writes the record; sampling, evaluation and resumption read it, so this
module is what they share and none of them imports another for it.
"""

from __future__ import annotations

import glob
import json
import os

import ml_collections

from spect_fastgan_jax import outputs, provenance, runlog
from spect_fastgan_jax.errors import DataError, MissingRunError, RunError

# Fields that must match between a run and its resumption: they change the
# computation, so mixing them would make the result neither run's.
RESUME_FIELDS = ("seed", "batch_size", "data", "model", "loss", "optim", "augment")
# Fields that change where or how fast data is read or convolutions are run,
# never what is read or computed (model.conv_impl: the same function to float32
# rounding), so a run may resume with other values.
RESUME_FREE_FIELDS = ("data.cache_dir", "data.read_workers", "model.conv_impl")

# Fields added after runs were first written, with the value that reproduces what
# a run without the field computed: an older run resumes and samples as what it was.
ADDED_FIELDS = {
    "model": {"noise_full_res": False, "g_cond": "concat", "d_cond": "input", "d_coords": False,
              "output_peak": 1.0, "normalise_output": False},
    "loss": {"mode_seeking": 0.0, "mode_seeking_target": 1.0, "mode_seeking_pairs": 0,
             "condition_aux": 0.0},
    "optim": {"ema_warmup": False, "lr_decay_epochs": 0},
    "data": {"condition_balance": 0.0, "holdout_fraction": 0.0, "holdout_seed": 0,
             "limit_subjects": "", "condition_side": False},
    "sample": {"symmetric_flip": False},
    "augment": {"renormalise": False, "diff_shift": 0, "diff_cutout": 0.0, "diff_intensity": 0.0,
                "blend_prob": 1.0, "flip_unilateral": False, "blend_mc_excess": 0.0},
}


def data_counts(dataset) -> dict[str, int]:
  """Slices per "level/pattern" present in a SliceDataset, as config.json records
  what a run trained on."""
  return {f"{l}/{p}": k for (l, p), k in dataset.counts().items() if k}


def config_hash(config) -> str:
  """A short hash of a config (a ConfigDict or the dict config.json holds): equal for
  equal settings, whatever the key order, so a data set's record names the recipe that
  made it."""
  plain = json.loads(config.to_json()) if hasattr(config, "to_json") else config
  return provenance.short_hash(plain)


def write_run_config(workdir: str, config, dataset=None, derived: dict | None = None) -> None:
  """Writes <workdir>/config.json (the config, the training counts per condition of
  the SliceDataset `dataset`, the settings training `derived` from the data, such as
  {"augment.blend_prob": 0.51} under augment.blend_mc_excess, and what produced the
  run), atomically."""
  record = {"config": json.loads(config.to_json()), "provenance": provenance.describe()}
  if dataset is not None:
    record["data_counts"] = data_counts(dataset)
  if derived:
    record["derived"] = dict(derived)
  old = read_run_record(workdir)
  if old is not None:
    # A resumed run keeps what produced each earlier part of it.
    record["earlier_provenance"] = old.get("earlier_provenance", []) + [old.get("provenance")]
  text = json.dumps(record, indent=2).encode()
  outputs.atomic_write(os.path.join(workdir, "config.json"), lambda f: f.write(text))


SUBJECTS_FILE = "subjects.json"


def write_subjects(workdir: str, subjects: dict[str, list[str]]) -> None:
  """Writes <workdir>/subjects.json, {"train": [...], "holdout": [...]}: which subjects
  the GAN trained on and which it never saw (config field data.holdout_fraction)."""
  text = json.dumps(subjects, indent=1).encode()
  outputs.atomic_write(os.path.join(workdir, SUBJECTS_FILE), lambda f: f.write(text))


def read_subjects(workdir: str) -> dict[str, list[str]] | None:
  """<workdir>/subjects.json, or None for a run written before the file existed."""
  record = read_json(os.path.join(workdir, SUBJECTS_FILE))
  if record is not None and not (isinstance(record, dict) and isinstance(record.get("train"), list)
                                 and isinstance(record.get("holdout"), list)):
    raise RunError(f"{os.path.join(workdir, SUBJECTS_FILE)} is not a record of training and held-out "
                   "subjects ({\"train\": [...], \"holdout\": [...]}); restore it or use another --workdir")
  return record


def check_same_subjects(workdir: str, subjects: dict[str, list[str]]) -> None:
  """RunError when the run in `workdir` recorded other training or held-out subjects than
  `subjects` (the data changed under it): a resumed or evaluated run must see the same split."""
  recorded = read_subjects(workdir)
  if recorded is None:
    return
  for part in ("train", "holdout"):
    was, now = set(recorded[part]), set(subjects[part])
    if was != now:
      diff = sorted(was ^ now)
      raise RunError(f"the run in {workdir} recorded other {part} subjects in {SUBJECTS_FILE} than the "
                     f"data gives now ({len(diff)} differ, e.g. {diff[0]!r}): the data or "
                     "data.holdout_fraction/holdout_seed changed; use the run's data or another --workdir")


def evaluation_dir(workdir: str) -> str:
  """Where --mode=select and --mode=evaluate write a run's outputs: <workdir>/evaluation."""
  return os.path.join(workdir, "evaluation")


def newest_selection(workdir: str) -> tuple[str, dict] | None:
  """(path, contents) of the select.json of the newest --mode=select output in the run
  in `workdir` (<workdir>/evaluation/select_*/), or None if select has not run there."""
  found = sorted(glob.glob(os.path.join(evaluation_dir(workdir), "select_*", "select.json")),
                 key=os.path.getmtime)
  if not found:
    return None
  return found[-1], read_json(found[-1])


def training_split(data_config, workdir: str, purpose: str, log=lambda m: None):
  """The data.Split of the run in `workdir` (its training and held-out subjects), read
  from `data_config` (the run's data block) and checked to be the set the run trained
  on: the subjects of its subjects.json and the slices per condition of its config.json.
  DataError starting with `purpose` (what needs the data) when it cannot be read or
  differs; RunError when the subjects differ."""
  from spect_fastgan_jax import data
  from spect_fastgan_jax.data import source
  where = source.source_name(data_config)
  try:
    split = data.load_split(data_config, log=log)
  except DataError as e:
    raise DataError(f"{purpose} needs the run's training data, which cannot be read: {e}") from e
  check_same_subjects(workdir, split.subjects())
  trained_on = (read_run_record(workdir) or {}).get("data_counts")
  found = data_counts(split.train)
  if trained_on is not None and found != trained_on:
    raise DataError(f"{purpose}: the data found at {where} is not the set the run in {workdir} "
                    f"trained on (slices per condition {found}, the run's {trained_on})")
  return split


def read_run_record(workdir: str) -> dict | None:
  """<workdir>/config.json as written by `write_run_config`; None if the workdir has no
  run; RunError naming the file if it cannot be read."""
  return read_json(os.path.join(workdir, "config.json"))


def read_json(path: str) -> dict | None:
  """A JSON record the package wrote (an object); None if there is none, RunError
  naming the file if it is damaged (cut short, edited by hand, not an object) or
  unreadable."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, ValueError) as e:
    raise RunError(f"{path} cannot be read ({type(e).__name__}: {e}); restore it or use "
                   "another --workdir") from e
  if not isinstance(record, dict):
    raise _not_a_record(path, f"it holds a JSON {type(record).__name__}, not an object")
  return record


def _not_a_record(path: str, why: str) -> RunError:
  return RunError(f"{path} is not a record this package wrote ({why}); restore it or use "
                  "another --workdir")


def read_run_config(workdir: str, with_derived_values: bool = False) -> ml_collections.ConfigDict | None:
  """The config a run in `workdir` was given; None if there is none.

  Fields added since the run was written get the values it computed with
  (ADDED_FIELDS), so every reader sees a complete config. With `with_derived_values`, the
  values training derived from the data (config.json's "derived", such as
  augment.flip_unilateral "auto" resolved) replace what was given: the config the run
  computed with, as its readers (sampling, evaluation, the audit) need it. Without,
  the config as given, which a resumed run must match.
  """
  record = read_run_record(workdir)
  if record is None:
    return None
  path = os.path.join(workdir, "config.json")
  config = record.get("config")
  if not isinstance(config, dict):
    raise _not_a_record(path, "no 'config' object in it")
  missing = [f for f in RESUME_FIELDS if f not in config]
  if missing:
    raise _not_a_record(path, f"its config lacks the field(s) {', '.join(missing)}")
  for block, fields in ADDED_FIELDS.items():
    if isinstance(config.get(block), dict):
      config[block] = {**fields, **config[block]}
  config = ml_collections.ConfigDict(config)
  derived = record.get("derived") or {}
  if not isinstance(derived, dict):
    raise _not_a_record(path, "its 'derived' is not an object")
  if not with_derived_values:
    return config
  try:
    config = with_derived(config, derived)
  except KeyError as e:
    raise _not_a_record(path, f"its 'derived' names {e.args[0]!r}, which its config does not have") from e
  if "augment" in config and config.augment.get("flip_unilateral") == "auto":
    raise _not_a_record(path, "its augment.flip_unilateral is 'auto' and its 'derived' lacks the "
                              "value training resolved that to")
  return config


def with_derived(config: ml_collections.ConfigDict, derived: dict) -> ml_collections.ConfigDict:
  """A copy of `config` with the fields of `derived` ({"block.field": value}, what
  training derived from the data) set, whatever type the field held as given
  (augment.flip_unilateral "auto" becomes a bool); `config` itself if there are none.
  KeyError naming a field `config` does not have."""
  if not derived:
    return config
  resolved = config.copy_and_resolve_references()
  for name, value in derived.items():
    block_name, _, field = name.partition(".")
    if block_name not in resolved or not hasattr(resolved[block_name], "to_dict") \
        or field not in resolved[block_name]:
      raise KeyError(name)
    block = resolved[block_name].to_dict()
    block[field] = value
    resolved[block_name] = ml_collections.ConfigDict(block)
  return resolved


def require_run_config(workdir: str) -> ml_collections.ConfigDict:
  """`read_run_config` with what training derived from the data (the config the run
  computed with), or MissingRunError naming the config.json that is not there."""
  config = read_run_config(workdir, with_derived_values=True)
  if config is None:
    seeds = sorted(d for d in (os.listdir(workdir) if os.path.isdir(workdir) else ())
                   if d.startswith("seed_") and os.path.exists(os.path.join(workdir, d, "config.json")))
    if seeds:
      raise MissingRunError(
          f"{workdir} holds a run of {len(seeds)} seeds, each a run of its own in "
          f"{', '.join(os.path.join(workdir, s) for s in seeds)}: name one of them as the workdir")
    raise MissingRunError(
        f"{os.path.join(workdir, 'config.json')} not found: {workdir} holds no trained run "
        "(train first: python launch.py --mode=train, or pass --workdir)")
  return config


def _plain(x):
  """Config values as comparable plain data (tuples and lists alike)."""
  if isinstance(x, (ml_collections.ConfigDict, dict)):
    return {k: _plain(v) for k, v in dict(x).items()}
  if isinstance(x, (list, tuple)):
    return [_plain(v) for v in x]
  return x


def check_resumable(saved, config) -> None:
  """Raises RunError naming a field that differs from the run being resumed."""
  for field in RESUME_FIELDS:
    a, b = _plain(saved.get(field)), _plain(config.get(field))
    for free in RESUME_FREE_FIELDS:
      block, _, name = free.partition(".")
      if block == field and isinstance(a, dict) and isinstance(b, dict):
        a.pop(name, None)
        b.pop(name, None)
    if a != b:
      if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
          if a.get(k) != b.get(k):
            raise RunError(
                f"config field {field}.{k} is {b.get(k)!r} but the run in this workdir was "
                f"trained with {a.get(k)!r}; resume with the same value or use another --workdir")
      raise RunError(f"config field {field} is {b!r} but the run in this workdir was trained "
                     f"with {a!r}; resume with the same value or use another --workdir")


def truncate_metrics(workdir: str, last_epoch: int) -> None:
  """Drops log lines of epochs after the restored checkpoint (a killed run's leftovers)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return
  text = "".join(json.dumps(r) + "\n" for r in runlog.read(workdir) if r["epoch"] <= last_epoch)
  outputs.atomic_write(path, lambda f: f.write(text.encode()))


def seed_runs(config, workdir: str) -> list[tuple[ml_collections.ConfigDict, str]]:
  """(config, workdir) of each seed a run trains.

  One seed trains in `workdir` itself. With config field `num_seeds` = S > 1, seeds
  seed .. seed+S-1 train side by side, each a complete run of its own (config,
  checkpoints, logs) in `<workdir>/seed_<seed>`, so sampling and evaluation take
  any of them as an ordinary workdir.
  """
  if config.num_seeds == 1:
    return [(config, workdir)]
  runs = []
  for i in range(config.num_seeds):
    c = ml_collections.ConfigDict(config.to_dict())
    c.seed = config.seed + i
    c.num_seeds = 1
    runs.append((c, os.path.join(workdir, f"seed_{c.seed}")))
  return runs
