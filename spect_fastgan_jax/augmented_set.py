"""`--mode=augment`: a data set of a run's real training slices and synthetic ones.

    out/
      manifest.csv     path,slice,level,pattern,side,subject,source,epoch,seed,index: the
                       project's manifest (--config.data.manifest=out/manifest.csv trains on it)
      real/            one NIfTI volume per real training slice: the slice and its two
                       neighbours (slice 1 of 3), in counts, as read
      synthetic/       one NIfTI volume per synthetic slice: the image three times (slice 1
                       of 3), in [0, 1]
      info.json        the run, its config hash, the checkpoint, the code version, the
                       counts, how the sides are known and what the near-copy filter dropped
      card.md, card.json  the run's model card (evaluation/card.py) with this set's section

Real rows are the run's training subjects only (its subjects.json); held-out subjects
stay out, so they can still test what is trained on the set. Synthetic rows bring
every condition the run was trained on up to a count: the largest real one
(`balance`) or `per_condition`; a condition that has as many real slices already gets
none, and no real slice is dropped. Each synthetic image is the one
`Sampler.generate(level, pattern, seed=seed, index=[index])` gives (with `side=` on a
side-conditioned run).

The side of a synthetic unilateral defect is the side it was drawn with on a
side-conditioned run (data.condition_side); otherwise the condition classifier's side
head reads it, and info.json and the card say so, with that classifier's held-out side
accuracy.

The set is written into a temporary folder beside `out` and renamed to `out` only when
complete, so an interruption leaves no folder at `out` (at most a hidden `.tmp-*`
folder beside it); an existing `out` is never written to.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from typing import Callable

import numpy as np

from spect_fastgan_jax import augment, checkpoints, conditions, outputs, preflight, provenance, sample
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.errors import ConfigError, OutputExistsError, is_whole
from spect_fastgan_jax.evaluation import card as card_lib
from spect_fastgan_jax.evaluation import classifier, memorisation, report

Log = Callable[[str], None]

MANIFEST_COLUMNS = ("path", "slice", "level", "pattern", "side", "subject", "source", "epoch",
                    "seed", "index")
# The selected slice of every volume written: the middle one of three.
SLICE = 1


def check_request(balance: bool, per_condition: int | None) -> None:
  """ConfigError unless exactly one of `balance` and `per_condition` (a whole number >= 1)."""
  if balance and per_condition is not None:
    raise ConfigError("give --balance or --per_condition=N, not both")
  if not balance and per_condition is None:
    raise ConfigError("--mode=augment needs --balance (every condition up to the largest real count) "
                      "or --per_condition=N (every condition up to N slices)")
  if per_condition is not None and (not is_whole(per_condition) or per_condition < 1):
    raise ConfigError(f"--per_condition must be a whole number >= 1, got {per_condition!r}")


def synthetic_counts(real: dict[tuple[str, str], int], balance: bool,
                     per_condition: int | None) -> dict[tuple[str, str], int]:
  """Synthetic slices per condition: up to the largest of `real`'s counts (`balance`) or
  to `per_condition`; conditions with no real slices (the run never learned them) and
  those already at the target get none."""
  check_request(balance, per_condition)
  real = {c: k for c, k in real.items() if k > 0}
  target = max(real.values()) if balance else int(per_condition)
  return {c: target - k for c, k in real.items() if k < target}


@dataclasses.dataclass
class Synthetic:
  """The synthetic slices of a set, each with what reproduces it."""
  images: np.ndarray    # [N, 64, 64] in [0, 1]
  level: np.ndarray     # [N] str
  pattern: np.ndarray   # [N] str
  side: np.ndarray      # [N] str: none, left, right
  index: np.ndarray     # [N] sample index


def read_sides(images: np.ndarray, pattern: np.ndarray, trained: classifier.Trained) -> np.ndarray:
  """[N] side labels: the classifier's side head on the unilateral images, none elsewhere."""
  side = np.full(len(pattern), "none", dtype="<U5")
  uni = np.flatnonzero(np.asarray(pattern) == "unilateral")
  if len(uni):
    pred = trained.predict(images[uni])["side"].argmax(1)
    side[uni] = np.asarray(classifier.SIDE_CLASSES)[pred]
  return side


def _safe(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:40]


def _rows(real: SliceDataset, synth: Synthetic, epoch: int, seed: int) -> list[tuple[dict, np.ndarray]]:
  """(manifest row, [3, 64, 64] volume to write) for every slice of the set."""
  rows = []
  for k in range(len(real)):
    path = f"real/{k:05d}_{real.level[k]}_{real.pattern[k]}_{_safe(real.subject[k])}.nii.gz"
    rows.append(({"path": path, "slice": SLICE, "level": real.level[k], "pattern": real.pattern[k],
                  "side": "" if real.side[k] == "none" else real.side[k], "subject": real.subject[k],
                  "source": "real", "epoch": "", "seed": "", "index": ""}, real.slices[k]))
  for k in range(len(synth.index)):
    side = "" if synth.side[k] == "none" else synth.side[k]
    name = "_".join(x for x in (synth.level[k], synth.pattern[k], side) if x)
    path = f"synthetic/{name}_{int(synth.index[k]):06d}.nii.gz"
    rows.append(({"path": path, "slice": SLICE, "level": synth.level[k], "pattern": synth.pattern[k],
                  "side": side, "subject": f"synthetic-e{epoch}-s{seed}-{int(synth.index[k])}",
                  "source": "synthetic", "epoch": epoch, "seed": seed, "index": int(synth.index[k])},
                 np.repeat(synth.images[k][None], 3, axis=0)))
  return rows


def write(run_config, evaluate_config, workdir: str, epoch: int, out_dir: str, *, balance: bool = False,
          per_condition: int | None = None, near_copy_filter: bool = True, log: Log = lambda m: None) -> str:
  """Writes the data set of the module docstring into `out_dir`; returns it.

  Args:
    run_config: the run's config (modes.run_config: config.json with the `sample` block
      of the command line: seed, batch size, symmetric flip).
    evaluate_config: the `evaluate` block: the near-copy rule (memorisation) and the
      condition classifier that reads sides (the one --mode=evaluate caches).
    workdir, epoch: the run and its saved epoch.
    balance, per_condition: the counts (synthetic_counts); exactly one.
    near_copy_filter: drop synthetic images closer to a training slice than the
      memorisation audit's threshold, drawing further sample indices in their place.

  Refused before anything is written or computed: a bad request (ConfigError), an
  existing `out_dir` (OutputExistsError), a folder that cannot be created
  (PreflightError), an epoch without a checkpoint (CheckpointError), training data
  that cannot be read or differ from the run's (DataError).
  """
  check_request(balance, per_condition)
  out_dir = os.path.normpath(out_dir)
  if os.path.lexists(out_dir):
    raise OutputExistsError(f"{out_dir} exists; --mode=augment never writes into an existing folder: "
                            "give a new --out")
  preflight.check_can_create(os.path.dirname(os.path.abspath(out_dir)))
  checkpoints.check_sampler_epoch(workdir, epoch)
  side_conditioned = conditions.side_conditioned(run_config.data)
  split = workdir_lib.training_split(run_config.data, workdir, "--mode=augment", log)
  real = split.train
  levels = conditions.check_levels(run_config.data.levels)
  real_counts = {c: k for c, k in real.counts().items() if c[0] in levels}
  counts = synthetic_counts(real_counts, balance, per_condition)
  seed = sample.check_seed(run_config.sample.seed)
  log(f"augment: {len(real)} real training slices and {sum(counts.values())} synthetic ones from epoch "
      f"{epoch} (seed {seed})")

  near = info = None
  if near_copy_filter and counts:
    near = memorisation.near_copy_reference(real, run_config.augment, evaluate_config.memorisation, log)
    info = near.describe()
  drawn = sample.RunGenerator(run_config, workdir).draw(epoch, counts, seed,
                                                       int(run_config.sample.batch_size),
                                                       near.near_copies if near else None)
  side_record = {"conditioned": side_conditioned}
  ref = None
  if side_conditioned:
    side = drawn.side
    side_record["how"] = "drawn as asked (data.condition_side)"
  else:
    _, ref = report.condition_classifier(real, split.holdout, evaluate_config.classifier,
                                         classifier.cache_dir(workdir), log)
    side = read_sides(drawn.images, drawn.pattern, ref.trained)
    side_record.update(how="read by the condition classifier's side head", read_by_classifier=True,
                       classifier_cache_key=ref.key,
                       classifier_holdout_side_accuracy=ref.holdout_accuracy.get("side"))
    log("augment: the run is not side-conditioned; the classifier read the side of "
        f"{int((drawn.pattern == 'unilateral').sum())} synthetic unilateral slices (held-out real side "
        f"accuracy {ref.holdout_accuracy.get('side')})")
  synth = Synthetic(drawn.images, drawn.level, drawn.pattern, side, drawn.index)
  filter_record = None if near is None else {**info, "dropped": drawn.dropped,
                                             "drawn": int(len(drawn.index) + len(drawn.dropped))}
  if filter_record:
    log(f"near-copy filter: dropped {len(drawn.dropped)} of {filter_record['drawn']} images drawn")

  all_counts = {f"{l}/{p}": {"real": k, "synthetic": counts.get((l, p), 0)} for (l, p), k in real_counts.items()
                if k > 0}
  sides = {f"{l}/unilateral": {s: {"real": int(((real.level == l) & (real.pattern == "unilateral")
                                                & (real.side == s)).sum()),
                                   "synthetic": int(((synth.level == l) & (synth.pattern == "unilateral")
                                                     & (synth.side == s)).sum())}
                                for s in conditions.DEFECT_SIDES}
           for l in levels if (l, "unilateral") in real_counts and real_counts[(l, "unilateral")]}
  record = workdir_lib.read_run_record(workdir) or {}
  data_set = {"epoch": int(epoch), "seed": seed,
              "rule": ("every condition brought up to the largest real count" if balance else
                       f"every condition brought up to {per_condition} slices"),
              "counts": all_counts, "unilateral_sides": sides,
              "side": side_record, "near_copy_filter": filter_record}
  report_path = card_lib.find_report(workdir, epoch)
  the_card = card_lib.with_data_set(
      card_lib.build(workdir, epoch, workdir_lib.read_json(report_path) if report_path else None, report_path),
      data_set)
  if report_path is None:
    log(f"augment: no --mode=evaluate report of epoch {epoch}: the card says the epoch is not evaluated")
  info_json = {
      "run": os.path.abspath(workdir), "epoch": int(epoch),
      "config_hash": workdir_lib.config_hash(record.get("config", {})),
      "checkpoint": os.path.abspath(os.path.join(checkpoints.checkpoint_dir(workdir, "sampler"), str(epoch))),
      "seed": seed, "batch_size": int(run_config.sample.batch_size),
      "symmetric_flip": sample.symmetric_flip(run_config),
      "flip_unilateral": augment.flips_unilateral(run_config.augment),
      "request": {"balance": bool(balance), "per_condition": per_condition},
      **{k: v for k, v in data_set.items() if k not in ("epoch", "seed")},
      "real_subjects": sorted(set(real.subject.tolist())),
      "held_out_subjects_left_out": split.subjects()["holdout"],
      "provenance": provenance.describe()}

  rows = _rows(real, synth, int(epoch), seed)
  with outputs.new_folder(out_dir, False) as tmp:
    for folder in ("real", "synthetic"):
      os.makedirs(os.path.join(tmp, folder))
    for row, volume in rows:
      outputs.write_nifti(volume, os.path.join(tmp, row["path"]))
    with open(os.path.join(tmp, "manifest.csv"), "w", newline="") as f:
      w = csv.DictWriter(f, MANIFEST_COLUMNS)
      w.writeheader()
      w.writerows(row for row, _ in rows)
    card_lib.write(the_card, tmp)
    # Written last: a folder with info.json holds everything above.
    outputs.write_json(info_json, os.path.join(tmp, "info.json"))
  log(f"wrote {out_dir}: {len(real)} real and {len(synth.index)} synthetic slices, manifest.csv, card.md")
  return out_dir
