"""--mode=evaluate: real vs one run (or several, e.g. A and B as the paper) at chosen
epochs, written as report.md (tables, P-values, figures) and report.json (every number)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import numpy as np

from spect_fastgan_jax import augment as augment_lib
from spect_fastgan_jax import conditions, outputs, provenance, sample
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.data.dataset import DataError, SliceDataset
from spect_fastgan_jax.errors import RunError
from spect_fastgan_jax.evaluation import (augmentation, card, classifier, criteria, figures,
                                          memorisation, score, utility)
from spect_fastgan_jax.evaluation import generated
from spect_fastgan_jax.evaluation.generated import real_counts
from spect_fastgan_jax.evaluation.report_md import markdown

Log = Callable[[str], None]


@dataclasses.dataclass
class RunSpec:
  """A run to evaluate: a name for tables, its workdir and config (config.json), the epoch."""
  label: str
  workdir: str
  config: object
  epoch: int


def real_group(ds: SliceDataset) -> score.Group:
  """The centre slices of the real data set, the images the paper compares against."""
  return score.Group("real", ds.slices[:, 1], ds.level, ds.pattern, ds.side)


def check_unseen(test: SliceDataset, runs: Sequence[RunSpec]) -> None:
  """DataError naming a subject of `test` that a run trained on (its subjects.json), or
  a run that records no training subjects: held-out figures must come from patients no
  run under test has seen."""
  subjects = set(test.subject.tolist())
  for run in runs:
    recorded = workdir_lib.read_subjects(run.workdir)
    if recorded is None:
      raise DataError(f"the run {run.label} in {run.workdir} records no training subjects "
                      f"({workdir_lib.SUBJECTS_FILE}): it may have trained on the {len(subjects)} "
                      "held-out test subjects, so it cannot be evaluated on them")
    seen = sorted(subjects & set(recorded["train"]))
    if seen:
      raise DataError(f"the evaluation would test on subject {seen[0]!r}"
                      + (f" and {len(seen) - 1} more" if len(seen) > 1 else "")
                      + f", which the run {run.label} in {run.workdir} trained on "
                      f"({workdir_lib.SUBJECTS_FILE}); compare runs held out on the same subjects")


def condition_classifier(ds: SliceDataset, test: SliceDataset | None, classifier_cfg, cache_dir: str,
                         log: Log = lambda m: None) -> tuple[SliceDataset, classifier.Reference]:
  """The condition classifier of a run's evaluation and the slices it was split from:
  trained on `ds` (the run's training slices) and tested on `test` (its held-out
  subjects) where there are any, else on the share of `ds`'s subjects it holds out
  itself. Cached under `cache_dir`, so every caller gets the one evaluate trained."""
  if test is None or not len(test):
    return ds, classifier.reference(ds, classifier_cfg, cache_dir, log)
  everyone = SliceDataset.concat([ds, test])
  return everyone, classifier.reference(everyone, classifier_cfg, cache_dir, log,
                                        holdout=np.arange(len(everyone)) >= len(ds))


def evaluate(runs: Sequence[RunSpec], ds: SliceDataset, cfg, out_dir: str, cache_dir: str,
             overwrite: bool = False, log: Log = lambda m: None,
             test: SliceDataset | None = None) -> str:
  """Generates each run's images, scores them against `ds` (the first run's real
  training slices) and writes report.md, report.json and the figures into `out_dir`.

  test: the subjects the runs never trained on (config field data.holdout_fraction). Then
    the condition classifier trains on `ds` and is tested on them, the utility study
    (evaluation/utility.py) replaces the augmentation study, and the memorisation audit
    takes them as its new patients; a run that trained on one of them is refused
    (check_unseen). Without it the classifier holds out a share of `ds`'s subjects itself
    (subjects the runs trained on), and the augmentation study tests on those.

  An existing `out_dir` is refused unless `overwrite`; the outputs are written to a
  temporary folder that replaces it only when complete. Returns out_dir.
  """
  hint = ", or choose another seed (--config.evaluate.seed)"
  augmentation.check_config(cfg)
  utility.check_config(cfg)
  if test is not None:
    check_unseen(test, runs)
  outputs.refuse_existing(out_dir, overwrite, hint)  # before minutes of work, not after
  t0 = time.time()
  real = real_group(ds)
  everyone, ref = condition_classifier(ds, test, cfg.classifier, cache_dir, log)
  real_pred = ref.trained.predict(real.images)
  counts = real_counts(real)
  fakes, scores, study, useful, memo, memo_refs, memo_figs = [], {}, {}, {}, {}, {}, {}
  mcfg = cfg.memorisation
  for run in runs:
    levels = conditions.check_levels(run.config.data.levels)
    run_counts = {c: k for c, k in counts.items() if c[0] in levels}
    log(f"{run.label}: generating {sum(run_counts.values())} images from epoch {run.epoch}")
    fake = generated.images(sample.RunGenerator(run.config, run.workdir), run.epoch, run_counts,
                            int(cfg.seed), run.label, int(cfg.batch_size))
    fakes.append(fake)
    fake_pred = ref.trained.predict(fake.images)
    scores[run.label] = score.run_scores(real, real_pred, fake, fake_pred, _levels(real),
                                         int(cfg.ms_ssim_pairs))
    if test is not None and cfg.utility_study:
      useful[run.label] = _utility(ds, test, run, cfg, _levels(real), log)
    elif test is None and cfg.augmentation_study:
      study[run.label] = augmentation.study(everyone, ref, fake, cfg.classifier, _levels(real),
                                            int(cfg.augmentation_repeats),
                                            int(cfg.augmentation_steps), log)
    if mcfg.enabled:
      memo[run.label], memo_figs[run.label] = _memorisation(ds, ref, run, fake, fake_pred, mcfg,
                                                            memo_refs, log, test)
  paper = score.paper_stats([real] + fakes)
  result = {
      "runs": [{"label": r.label, "workdir": os.path.abspath(r.workdir), "epoch": r.epoch,
                "levels": list(r.config.data.levels),
                "condition_side": conditions.side_conditioned(r.config.data),
                "symmetric_flip": sample.symmetric_flip(r.config),
                "flip_unilateral": augment_lib.flips_unilateral(r.config.augment)} for r in runs],
      "seed": int(cfg.seed), "counts": {f"{l}/{p}": k for (l, p), k in counts.items()},
      "paper": paper, "classifier": {"cache_key": ref.key, "holdout_accuracy": ref.holdout_accuracy,
                                     "holdout_subjects": int(len(np.unique(everyone.subject[ref.holdout]))),
                                     "trained_with": ref.trained_with},
      "test_subjects": {
          "unseen_by_the_runs": test is not None,
          "subjects": sorted(set(everyone.subject[ref.holdout].tolist()))},
      "runs_scores": scores, "augmentation": study, "utility": useful, "memorisation": memo,
      "evaluate_config": cfg.to_dict(),
      "provenance": provenance.describe()}
  result["criteria"] = {r.label: criteria.fidelity_criteria(result, r.label) for r in runs}

  with outputs.new_folder(out_dir, overwrite, hint) as tmp:
    groups = [real] + fakes
    figures.image_grid(groups, os.path.join(tmp, "fig4_images.png"), int(cfg.grid_columns))
    figures.box_plots(groups, paper, os.path.join(tmp, "fig5_boxplots.png"))
    figures.mean_sd_maps(groups, os.path.join(tmp, "fig6_maps.png"))
    for k, (label, (fake, aligned)) in enumerate(memo_figs.items()):
      memo[label]["figure"] = f"memorisation_{k}.png"
      figures.closest_pairs(fake.images, memo[label]["closest"], aligned,
                            os.path.join(tmp, memo[label]["figure"]))
    result["seconds"] = round(time.time() - t0, 1)
    outputs.write_json(result, os.path.join(tmp, "report.json"))
    with open(os.path.join(tmp, "report.md"), "w") as f:
      f.write(markdown(result))
    # The model card of the first run, from the same numbers (evaluation/card.py).
    card.write(card.build(runs[0].workdir, runs[0].epoch, outputs.finite(result),
                          os.path.join(out_dir, "report.json"), runs[0].label), tmp)
  log(f"wrote {out_dir}/report.md ({result['seconds']} s)")
  return out_dir


def _utility(ds: SliceDataset, test: SliceDataset, run: RunSpec, cfg, levels, log: Log) -> dict:
  """The utility study of one run: synthetic slices that balance the conditions, with
  near-copies (judged against the training subjects alone) replaced."""
  near = memorisation.near_copy_reference(ds, run.config.augment, cfg.memorisation, log)
  counts = utility.synthetic_counts(ds, levels)
  log(f"{run.label}: generating {sum(counts.values())} synthetic slices for the utility study")
  try:
    synthetic = generated.images(sample.RunGenerator(run.config, run.workdir), run.epoch, counts,
                                 int(cfg.seed), run.label, int(cfg.batch_size), near_copy=near.near_copies)
  except RunError as e:
    # A generator that replays its training data: the report (and its memorisation
    # audit, which shows how) is still written, with the study marked as not run.
    log(f"{run.label}: utility study not run: {e}")
    return {"skipped": str(e)}
  seeds = [int(cfg.classifier.seed) + s for s in range(int(cfg.utility_seeds))]
  return utility.study(ds, test, synthetic, cfg.classifier, levels, seeds, int(cfg.utility_steps), log,
                       synthetic_share=float(cfg.utility_synthetic_share),
                       cache_dir=classifier.cache_dir(run.workdir))


def _memorisation(ds: SliceDataset, ref: classifier.Reference, run: RunSpec, fake: score.Group,
                  fake_pred: dict, mcfg, refs: dict, log: Log, test: SliceDataset | None = None):
  """The memorisation audit of one run's generated images; the reference (new-patient
  distances: `test`'s subjects where given) is built once per augmentation setting and
  reused across runs."""
  t0 = time.time()
  settings = memorisation.reference_settings(run.config.augment, mcfg)
  key = tuple(sorted(settings.items()))
  if key not in refs:
    refs[key] = memorisation.new_patient_reference(
        ds, **settings, features=lambda x: ref.trained.predict(x)["features"], new_patients=test, log=log)
  new_patients = refs[key]
  result = memorisation.audit(new_patients, fake.images, fake.level, fake.pattern, fake_pred["features"],
                              closest=int(mcfg.closest_shown))
  aligned = [memorisation.aligned_training_slice(new_patients, r) for r in result["closest"]]
  result["seconds"] = round(time.time() - t0, 1)
  log(f"{run.label}: memorisation audit: near-copies {result['near_copy_share']['pixel']:.1%} (pixel), "
      f"C_T {result['c_t']['pixel']:.2f} ({result['seconds']} s)")
  return result, (fake, aligned)


def _levels(real: score.Group) -> tuple[str, ...]:
  return tuple(l for l in conditions.LEVELS if (real.level == l).any())
