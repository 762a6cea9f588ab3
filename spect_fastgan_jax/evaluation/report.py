"""--mode=evaluate: real vs one run (or several, e.g. A and B as the paper) at chosen
epochs, written as report.md (tables, P-values, figures) and report.json (every number)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Sequence

import numpy as np

from spect_fastgan_jax import conditions, provenance
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.evaluation import augmentation, classifier, figures, outputs, score, stats
from spect_fastgan_jax.evaluation.generated import RunSampler, real_counts

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


def evaluate(runs: Sequence[RunSpec], ds: SliceDataset, cfg, out_dir: str, cache_dir: str,
             overwrite: bool = False, log: Log = lambda m: None) -> str:
  """Generates each run's images, scores them against `ds` (the first run's real slices)
  and writes report.md, report.json and the figures into `out_dir`.

  An existing `out_dir` is refused unless `overwrite`; the outputs are written to a
  temporary folder that replaces it only when complete. Returns out_dir.
  """
  hint = ", or choose another seed (--config.evaluate.seed)"
  outputs.refuse_existing(out_dir, overwrite, hint)  # before minutes of work, not after
  t0 = time.time()
  real = real_group(ds)
  ref = classifier.reference(ds, cfg.classifier, cache_dir, log)
  real_pred = ref.trained.predict(real.images)
  counts = real_counts(real)
  fakes, scores, study = [], {}, {}
  for run in runs:
    levels = conditions.check_levels(run.config.data.levels)
    run_counts = {c: k for c, k in counts.items() if c[0] in levels}
    log(f"{run.label}: generating {sum(run_counts.values())} images from epoch {run.epoch}")
    fake = RunSampler.of(run.config, run.workdir).images(run.epoch, run_counts, int(cfg.seed), run.label,
                                                         int(cfg.batch_size))
    fakes.append(fake)
    fake_pred = ref.trained.predict(fake.images)
    scores[run.label] = score.run_scores(real, real_pred, fake, fake_pred, _levels(real),
                                         int(cfg.ms_ssim_pairs))
    if cfg.augmentation_study:
      study[run.label] = augmentation.study(ds, ref, fake, cfg.classifier, _levels(real), log)
  paper = score.paper_stats([real] + fakes)
  result = {
      "runs": [{"label": r.label, "workdir": os.path.abspath(r.workdir), "epoch": r.epoch,
                "levels": list(r.config.data.levels)} for r in runs],
      "seed": int(cfg.seed), "counts": {f"{l}/{p}": k for (l, p), k in counts.items()},
      "paper": paper, "classifier": {"cache_key": ref.key, "holdout_accuracy": ref.holdout_accuracy,
                                     "holdout_subjects": int(len(np.unique(ds.subject[ref.holdout])))},
      "runs_scores": scores, "augmentation": study, "evaluate_config": cfg.to_dict(),
      "provenance": provenance.describe()}

  with outputs.new_folder(out_dir, overwrite, hint) as tmp:
    groups = [real] + fakes
    figures.image_grid(groups, os.path.join(tmp, "fig4_images.png"), int(cfg.grid_columns))
    figures.box_plots(groups, paper, os.path.join(tmp, "fig5_boxplots.png"))
    figures.mean_sd_maps(groups, os.path.join(tmp, "fig6_maps.png"))
    result["seconds"] = round(time.time() - t0, 1)
    outputs.write_json(result, os.path.join(tmp, "report.json"))
    with open(os.path.join(tmp, "report.md"), "w") as f:
      f.write(markdown(result))
  log(f"wrote {out_dir}/report.md ({result['seconds']} s)")
  return out_dir


def _levels(real: score.Group) -> tuple[str, ...]:
  return tuple(l for l in conditions.LEVELS if (real.level == l).any())


# --- report.md ----------------------------------------------------------------

def _p(p) -> str:
  if p is None or not np.isfinite(p):
    return "n/a"
  return "< 0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.2f}"


def _f(x, digits=3) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _stats_table(block: dict, labels: list[str]) -> list[str]:
  head = "| | metric | real | " + " | ".join(f"{l} (P vs real)" for l in labels) + " | ANOVA P |"
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for key, per_metric in block.items():
    for m, (_, label) in score.PER_IMAGE.items():
      c = per_metric[m]
      cells = [f"{_f(c['mean'].get('real'))} +/- {_f(c['sd'].get('real'))} (n={c['n'].get('real')})"]
      for l in labels:
        if l in c["mean"]:
          p = c["dunnett_p"].get(l)
          cells.append(f"{_f(c['mean'][l])} +/- {_f(c['sd'][l])} ({_p(p)} {stats.stars(p) if p is not None else ''})")
        else:
          cells.append("-")
      lines.append(f"| {key} | {label} | " + " | ".join(cells) + f" | {_p(c['anova_p'])} |")
  return lines


def markdown(r: dict) -> str:
  """report.md from evaluate()'s result dict."""
  labels = [x["label"] for x in r["runs"]]
  out = ["# Fidelity report", "",
         "Runs: " + "; ".join(f"**{x['label']}** epoch {x['epoch']} (levels {', '.join(x['levels'])}, "
                              f"`{x['workdir']}`)" for x in r["runs"]),
         f"Generated with seed {r['seed']}, sample indices 0..N-1; as many images per condition as the "
         "real set: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items()) + ".",
         "All metrics on max-normalised slices (real: the centre slice); LR = patient-left / "
         "patient-right counts (columns 32-63 / 0-31). See docs/evaluation.md for what each "
         "metric can and cannot tell.", "",
         "## The paper's comparison, per pattern (levels pooled; Fig. 5)", "",
         "Mean +/- SD; P: Dunnett's test against real (with one run: the t-test); ANOVA over "
         "real and all runs. * P < 0.05, ** < 0.01, *** < 0.001, **** < 0.0001.", ""]
  out += _stats_table(r["paper"]["per_pattern"], labels)
  out += ["", "![Fig. 5](fig5_boxplots.png)", "", "## Per level and pattern", ""]
  out += _stats_table(r["paper"]["per_condition"], labels)
  if len(labels) > 1:
    out += ["", "Tukey HSD, every pair (per pattern):", ""]
    for key, per_metric in r["paper"]["per_pattern"].items():
      for m, c in per_metric.items():
        out.append(f"- {key} {m}: " + ", ".join(f"{k} {_p(v)}" for k, v in c["tukey_p"].items()))
  out += ["", "## Diversity: mean pixel-wise SD (Fig. 6) and pairwise MS-SSIM", "",
          "| | real SD | " + " | ".join(f"{l} SD" for l in labels) + " | "
          + " | ".join(f"{l} MS-SSIM (real) / diversity ratio" for l in labels) + " |",
          "|" + "---|" * (2 + 2 * len(labels))]
  for key, sds in r["paper"]["pixelwise_sd"].items():
    if "/" not in key:
      continue
    cells = [_f(sds.get(l)) if l in sds else "-" for l in labels]
    for l in labels:
      pc = r["runs_scores"][l]["per_condition"].get(key)
      cells.append(f"{_f(pc['ms_ssim_fake'])} ({_f(pc['ms_ssim_real'])}) / {_f(pc['diversity_ratio'], 2)}"
                   if pc else "-")
    out.append(f"| {key} | {_f(sds['real'])} | " + " | ".join(cells) + " |")
  out += ["", "Diversity ratio = (1 - MS-SSIM generated) / (1 - MS-SSIM real): 1 = as varied as the "
          "real slices, near 0 = collapsed.", "", "![Fig. 6](fig6_maps.png)", "",
          "## Condition fidelity (classifier trained on real subjects)", "",
          f"Held-out real subjects: {r['classifier']['holdout_subjects']}. A generated image counts "
          "as right when the classifier gives the level and pattern it was asked for.", "",
          "| condition | held-out real | " + " | ".join(labels) + " | "
          + " | ".join(f"{l} Frechet / kernel" for l in labels) + " |",
          "|" + "---|" * (2 + 2 * len(labels))]
  ho = r["classifier"]["holdout_accuracy"]
  for key in r["counts"]:
    cells = [_f(r["runs_scores"][l]["accuracy"]["per_condition"].get(key), 2) for l in labels]
    for l in labels:
      pc = r["runs_scores"][l]["per_condition"].get(key)
      cells.append(f"{_f(pc['frechet'], 2)} / {_f(pc['kernel'], 3)}" if pc else "-")
    out.append(f"| {key} | {_f(ho['per_condition'].get(key), 2)} | " + " | ".join(cells) + " |")
  out.append(f"| **all** | **{_f(ho['overall'], 3)}** | "
             + " | ".join(f"**{_f(r['runs_scores'][l]['accuracy']['overall'], 3)}**" for l in labels)
             + " | " + " | ".join(f"{_f(r['runs_scores'][l]['summary']['frechet_mean'], 2)} / "
                                  f"{_f(r['runs_scores'][l]['summary']['kernel_mean'], 3)} (mean)"
                                  for l in labels) + " |")
  out += ["", f"Side of unilateral defects on held-out real slices: classifier accuracy "
          f"{_f(ho.get('side'), 3)}.", "", "### Left/right balance of unilateral defects", "",
          "| run | level | n | real left share (labels) | real left share (LR < 1) | "
          "generated left share (classifier) | generated left share (LR < 1) | binomial P |",
          "|---|---|---|---|---|---|---|---|"]
  for l in labels:
    for level, b in r["runs_scores"][l]["side_balance"].items():
      out.append(f"| {l} | {level} | {b['n_fake']} | {_f(b['real_left_share'], 2)} | "
                 f"{_f(b['real_left_share_by_lr'], 2)} | {_f(b['fake_left_share_by_classifier'], 2)} | "
                 f"{_f(b['fake_left_share_by_lr'], 2)} | {_p(b['binomial_p'])} |")
  if r["augmentation"]:
    out += ["", "## Data augmentation: accuracy on held-out real subjects", "",
            "| run | trained on | overall | pattern | level | side |", "|---|---|---|---|---|---|"]
    for l, s in r["augmentation"].items():
      for name, a in s.items():
        out.append(f"| {l} | {name} | {_f(a['overall'])} | {_f(a['pattern'])} | {_f(a['level'])} | "
                   f"{_f(a['side'])} |")
  out += ["", "## Images (Fig. 4)", "", "![Fig. 4](fig4_images.png)", "",
          f"Evaluation took {r.get('seconds', 'n/a')} s.", ""]
  return "\n".join(out)
