"""Where a run's slices come from: a ready npz, a user's manifest, or the cached
simulated default set; and `--mode=simulate`'s files in the workdir."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import tempfile
from typing import Callable

import numpy as np

from spect_fastgan_jax import conditions, outputs, preflight, provenance
from spect_fastgan_jax.data import contact_sheet, dataset, manifest, simulate
from spect_fastgan_jax.data.dataset import DataError, SliceDataset
from spect_fastgan_jax.errors import ConfigError, check_field, is_number, is_whole

Log = Callable[[str], None]


def default_cache_dir() -> str:
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "spect_fastgan_jax")


def simulation_key(sim) -> str:
  """Hash of everything the simulated set depends on: its parameters, the
  simulator's version and the nilearn release whose templates it images."""
  try:
    nilearn_version = importlib.metadata.version("nilearn")
  except importlib.metadata.PackageNotFoundError:
    nilearn_version = "unknown"
  spec = {"simulation": sim.to_dict(), "simulator_version": simulate.SIMULATOR_VERSION,
          "nilearn": nilearn_version}
  return provenance.short_hash(spec)


def simulated_set(data_config, log: Log = print) -> SliceDataset:
  """The simulated default set: loaded from the cache if its parameters were built
  before, else simulated (about 10 s) and cached."""
  sim = data_config.simulation
  cache_dir = data_config.cache_dir or default_cache_dir()
  key = simulation_key(sim)
  path = os.path.join(cache_dir, f"simulated-{key}.npz")
  plan = simulate.count_plan(sim)
  if os.path.exists(path):
    try:
      ds = dataset.load(path)
      if ds.counts() == plan:
        log(f"loaded the simulated data set from the cache {path}")
        return ds
      log(f"cached set {path} does not match its parameters; rebuilding it")
    except DataError as e:
      log(f"cached set unreadable ({e}); rebuilding it")
  ds = simulate.simulate(sim, log)
  try:
    ds.save(path)
    # Beside the npz, for people browsing the cache: what the set was built from.
    text = json.dumps(sim.to_dict(), sort_keys=True, indent=1, default=list)
    outputs.atomic_write(path[:-len(".npz")] + ".json", lambda f: f.write(text.encode()))
    log(f"cached the simulated data set as {path}")
  except OSError as e:  # a read-only cache must not stop a run
    log(f"could not cache the simulated data set in {cache_dir}: {e}")
  return ds


def build_full_set(data_config, log: Log = print) -> SliceDataset:
  """Every slice of the configured source, all levels: `data.npz` if set, else
  `data.manifest` if set, else the simulated default set."""
  if data_config.npz:
    return dataset.load(data_config.npz)
  if data_config.manifest:
    return manifest.load_manifest(data_config.manifest, bool(data_config.resample_inplane),
                                  int(data_config.read_workers), log)
  return simulated_set(data_config, log)


def source_name(data_config) -> str:
  """How error messages name the configured source."""
  return data_config.npz or data_config.manifest or "simulated data set"


@dataclasses.dataclass(frozen=True)
class Split:
  """A run's slices: `train` the GAN sees, `holdout` the subjects it never sees
  (empty without config field data.holdout_fraction)."""
  train: SliceDataset
  holdout: SliceDataset

  def subjects(self) -> dict[str, list[str]]:
    """{"train": [...], "holdout": [...]}, sorted: what <workdir>/subjects.json records."""
    return {"train": sorted(set(self.train.subject.tolist())),
            "holdout": sorted(set(self.holdout.subject.tolist()))}


def parse_limits(text: str) -> dict[tuple[str, str], int]:
  """config field data.limit_subjects ("BG/bilateral:10,COR/unilateral:20") as
  {(level, pattern): k}; ConfigError naming the part that is not of that form."""
  limits = {}
  for part in (p.strip() for p in str(text).split(",") if p.strip()):
    condition, _, k = part.partition(":")
    level, _, pattern = condition.partition("/")
    if (level not in conditions.LEVELS or pattern not in conditions.PATTERNS or not k.strip().isdigit()
        or int(k) < 1 or (level, pattern) in limits):
      raise ConfigError(f"config field data.limit_subjects: {part!r} is not LEVEL/pattern:k with a "
                        f"known level ({', '.join(conditions.LEVELS)}), pattern "
                        f"({', '.join(conditions.PATTERNS)}) and k >= 1, each condition once")
    limits[(level, pattern)] = int(k)
  return limits


def limit_subjects(ds: SliceDataset, limits: dict[tuple[str, str], int], seed: int,
                   source: str = "data set") -> SliceDataset:
  """`ds` with only k subjects' slices of each limited (level, pattern) kept (drawn with
  `seed`); DataError when a condition has fewer than k subjects."""
  keep = np.ones(len(ds), bool)
  for (level, pattern), k in limits.items():
    rows = (ds.level == level) & (ds.pattern == pattern)
    subjects = sorted(set(ds.subject[rows].tolist()))
    if len(subjects) < k:
      raise DataError(f"{source}: config field data.limit_subjects keeps {k} subjects of "
                      f"{level}/{pattern}, but its training part has only {len(subjects)}")
    rng = np.random.default_rng([int(seed), conditions.LEVELS.index(level), conditions.PATTERNS.index(pattern)])
    kept = set(rng.permutation(np.array(subjects))[:k].tolist())
    keep &= ~rows | np.isin(ds.subject, sorted(kept))
  return ds.subset(keep)


def check_holdout_config(data_config) -> None:
  """Raises ConfigError unless data.holdout_fraction is in [0, 1), data.holdout_seed a
  whole number >= 0 and data.limit_subjects of the form LEVEL/pattern:k[,...]."""
  v = data_config.holdout_fraction
  check_field(is_number(v) and 0 <= v < 1, "data.holdout_fraction", v, "must be a number in [0, 1)")
  seed = data_config.holdout_seed
  check_field(is_whole(seed) and seed >= 0, "data.holdout_seed", seed, "must be a whole number >= 0")
  parse_limits(data_config.limit_subjects)


def split_holdout(ds: SliceDataset, data_config, source: str = "data set") -> Split:
  """`ds` (every slice of the run's levels) split into the subjects the GAN trains on
  and those held out (config fields data.holdout_fraction, data.holdout_seed); the
  training part then keeps only the subjects data.limit_subjects allows."""
  check_holdout_config(data_config)
  held = dataset.subject_split(ds, float(data_config.holdout_fraction), int(data_config.holdout_seed))
  if data_config.holdout_fraction > 0 and not held.any():
    raise ConfigError(f"config field data.holdout_fraction is {data_config.holdout_fraction}, but {source} "
                      "has no pattern with two subjects or more, so no subject can be held out")
  limits = parse_limits(data_config.limit_subjects)
  train = limit_subjects(ds.subset(~held), limits, int(data_config.holdout_seed), source)
  split = Split(train, ds.subset(held))
  if held.any() or limits:
    dataset.select_levels(split.train, data_config.levels, f"{source} without its held-out subjects")
  return split


def load_split(data_config, log: Log = print) -> Split:
  """The run's slices (build_full_set restricted to `data.levels`), split into training
  and held-out subjects; DataError if a pattern the run conditions on has no slices."""
  ds = dataset.select_levels(build_full_set(data_config, log), data_config.levels,
                             source_name(data_config))
  split = split_holdout(ds, data_config, source_name(data_config))
  for (level, pattern), k in parse_limits(data_config.limit_subjects).items():
    log(f"data.limit_subjects: training on {k} subjects' slices of {level}/{pattern} "
        f"({int(((split.train.level == level) & (split.train.pattern == pattern)).sum())} slices)")
  if len(split.holdout):
    log(f"holding out {len(split.holdout)} slices of {len(split.subjects()['holdout'])} subjects "
        f"(data.holdout_fraction {data_config.holdout_fraction}); the GAN trains on "
        f"{len(split.train)} slices of {len(split.subjects()['train'])}")
  return split


def load_training_set(data_config, log: Log = print) -> SliceDataset:
  """The slices the GAN trains on: load_split's training subjects."""
  return load_split(data_config, log).train


def _same(a: SliceDataset, b: SliceDataset) -> bool:
  return all(np.array_equal(getattr(a, f), getattr(b, f))
             for f in ("slices", "level", "pattern", "side", "subject"))


def simulate_to_workdir(data_config, workdir: str, log: Log = print) -> tuple[str, str]:
  """`--mode=simulate`: writes workdir/dataset.npz and workdir/contact_sheet.png.

  The set is build_full_set's (simulated by default, a manifest's when one is
  configured). An existing dataset.npz with the same content is left as it is;
  one with different content is never overwritten (a run in that workdir may have
  trained on it): DataError. A workdir that is a file or cannot be written is a
  PreflightError (preflight.check_writable, as for training). Both files are
  written to temporary names first and renamed only when both are complete, so a
  failure leaves the workdir unchanged.

  Returns:
    (npz path, png path).
  """
  ds = build_full_set(data_config, log)
  preflight.check_writable(workdir)  # as training does: a file, or a read-only folder, is one line
  npz = os.path.join(workdir, "dataset.npz")
  png = os.path.join(workdir, "contact_sheet.png")
  unchanged = False
  if os.path.exists(npz):
    try:
      unchanged = _same(dataset.load(npz), ds)
    except DataError:
      unchanged = False
    if not unchanged:
      raise DataError(f"{npz} already exists and holds a different data set; it is not "
                      "overwritten (a run may have used it): remove it or choose another workdir")
  tmp_png = tmp_npz = None
  try:
    with outputs.writing(workdir):
      fd, tmp_png = tempfile.mkstemp(prefix=".contact-", suffix=".png", dir=workdir)
      os.close(fd)
      contact_sheet.write_contact_sheet(ds, tmp_png)
      if not unchanged:
        fd, tmp_npz = tempfile.mkstemp(prefix=".dataset-", suffix=".npz", dir=workdir)
        os.close(fd)
        ds.save(tmp_npz)
        os.replace(tmp_npz, npz)
        tmp_npz = None
      os.replace(tmp_png, png)
      tmp_png = None
  finally:
    for tmp in (tmp_png, tmp_npz):
      if tmp and os.path.exists(tmp):
        os.unlink(tmp)
  log(f"{'kept the identical' if unchanged else 'wrote'} {npz} ({len(ds)} slices) and wrote {png}")
  return npz, png
