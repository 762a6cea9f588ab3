"""--mode=select: score saved epochs against the real slices and name the best one
by a documented rule, instead of a reader scrolling through 1000 epochs by eye.

The rule (also in docs/evaluation.md), applied to the scored epochs:
  1. eligible: condition accuracy of the generated images within
     `evaluate.select.accuracy_margin` of the best scored epoch, and diversity ratio
     (1 - MS-SSIM generated) / (1 - MS-SSIM real) at least `evaluate.select.min_diversity`
     (a collapsed generator can score well on the other numbers);
  2. among them the lowest mean per-condition Frechet distance on the classifier's
     features wins; ties go to the earlier epoch.
If no epoch is eligible on diversity, step 1 uses the accuracy condition alone.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Callable, Sequence

import numpy as np

from spect_fastgan_jax import conditions, provenance, sample
from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax import outputs
from spect_fastgan_jax.evaluation import classifier, figures, metrics, score, stats
from spect_fastgan_jax.evaluation import generated
from spect_fastgan_jax.evaluation.generated import real_counts
from spect_fastgan_jax.evaluation.report import real_group
from spect_fastgan_jax.errors import CheckpointError, ConfigError

Log = Callable[[str], None]

# Columns of the table and plot: (key, label); lower is better unless noted in docs.
COLUMNS = (("accuracy", "condition accuracy"), ("frechet_mean", "Frechet distance (mean)"),
           ("kernel_mean", "kernel distance (mean)"), ("diversity_ratio", "diversity ratio"),
           ("mc_abs_d", "MC effect size |d|"), ("lr_abs_d", "LR effect size |d|"),
           ("mc_min_p", "MC min P"), ("lr_min_p", "LR min P"))


class Scorer:
  """Everything that does not change between epochs, computed once: the real group,
  the cached classifier, the real features and real MS-SSIM, the compiled generator."""

  def __init__(self, run_config, workdir: str, ds: SliceDataset, cfg, cache_dir: str,
               log: Log = lambda m: None):
    self.cfg = cfg
    self.real = real_group(ds)
    self.levels = conditions.check_levels(run_config.data.levels)
    self.ref = classifier.reference(ds, cfg.classifier, cache_dir, log)
    self.real_pred = self.ref.trained.predict(self.real.images)
    self.real_ms = score.real_ms_ssim(self.real, int(cfg.ms_ssim_pairs))
    self.counts = real_counts(self.real)
    self.generator = sample.RunGenerator(run_config, workdir)

  def score(self, epoch: int) -> dict:
    """One row of the selection table for `epoch`."""
    t = time.time()
    fake = generated.images(self.generator, epoch, self.counts, int(self.cfg.seed), f"epoch {epoch}",
                            int(self.cfg.batch_size))
    s = score.run_scores(self.real, self.real_pred, fake, self.ref.trained.predict(fake.images),
                         self.levels, int(self.cfg.ms_ssim_pairs), self.real_ms)
    row = {"epoch": int(epoch), **s["summary"]}
    for m, fn in (("mc", metrics.mean_counts), ("lr", metrics.lr_ratio)):
      d = [abs(stats.cohens_d(fn(self.real.images[self.real.mask(p, l)]), fn(fake.images[fake.mask(p, l)])))
           for l, p in self.real.conditions()]
      ps = [stats.compare({"real": fn(self.real.images[self.real.mask(p)]),
                           "fake": fn(fake.images[fake.mask(p)])})["anova_p"] for p in conditions.PATTERNS
            if self.real.mask(p).any()]
      row[f"{m}_abs_d"] = float(np.nanmean(d))
      row[f"{m}_min_p"] = float(np.nanmin(ps))
    row["seconds"] = round(time.time() - t, 2)
    return row


def choose(rows: Sequence[dict], accuracy_margin: float, min_diversity: float) -> tuple[int | None, str]:
  """The module docstring's rule -> (best epoch, one-line reason)."""
  ok = [r for r in rows if np.isfinite(r["frechet_mean"])]
  if not ok:
    return None, "no epoch has a finite Frechet distance"
  top = max(r["accuracy"] for r in ok)
  acc_ok = [r for r in ok if r["accuracy"] >= top - accuracy_margin]
  eligible = [r for r in acc_ok if r["diversity_ratio"] >= min_diversity]
  note = ""
  if not eligible:
    eligible, note = acc_ok, f" (no epoch reached diversity ratio {min_diversity}; rule applied without it)"
  best = min(eligible, key=lambda r: (r["frechet_mean"], r["epoch"]))
  return best["epoch"], (f"lowest mean Frechet distance ({best['frechet_mean']:.3g}) among the "
                         f"{len(eligible)} epoch(s) with condition accuracy >= {top - accuracy_margin:.3f} "
                         f"(best {top:.3f} - {accuracy_margin})"
                         + ("" if note else f" and diversity ratio >= {min_diversity}") + note)


def epochs_to_score(available: Sequence[int], every: int) -> list[int]:
  """Every `every`-th saved epoch (multiples of `every`), always with the last one."""
  if every < 1:
    raise ConfigError(f"--select_every must be >= 1, got {every}")
  chosen = [e for e in available if e % every == 0]
  if available and available[-1] not in chosen:
    chosen.append(available[-1])
  return chosen


def select(run_config, workdir: str, epochs: Sequence[int], ds: SliceDataset, cfg, out_dir: str,
           cache_dir: str, overwrite: bool = False, log: Log = lambda m: None) -> dict:
  """Scores `epochs`, writes select.json, select.md, select.csv and select.png into
  `out_dir` (refused if it exists, unless `overwrite`) and returns select.json's dict."""
  outputs.refuse_existing(out_dir, overwrite)
  if not epochs:
    raise CheckpointError(f"no epochs to score in {workdir}")
  scorer = Scorer(run_config, workdir, ds, cfg, cache_dir, log)
  rows = []
  for e in epochs:
    rows.append(scorer.score(e))
    r = rows[-1]
    log(f"epoch {e}: accuracy {r['accuracy']:.3f}, Frechet {r['frechet_mean']:.3g}, "
        f"diversity {r['diversity_ratio']:.2f} ({r['seconds']} s)")
  best, reason = choose(rows, float(cfg.select.accuracy_margin), float(cfg.select.min_diversity))
  result = {"best_epoch": best, "reason": reason, "rows": rows, "workdir": os.path.abspath(workdir),
            "holdout_real_accuracy": scorer.ref.holdout_accuracy["overall"],
            "evaluate_config": cfg.to_dict(), "provenance": provenance.describe()}

  with outputs.new_folder(out_dir, overwrite) as tmp:
    figures.metrics_vs_epoch(rows, best, os.path.join(tmp, "select.png"), COLUMNS)
    outputs.write_json(result, os.path.join(tmp, "select.json"))
    with open(os.path.join(tmp, "select.csv"), "w", newline="") as f:
      w = csv.DictWriter(f, ["epoch"] + [c for c, _ in COLUMNS] + ["sd_ratio", "seconds"], extrasaction="ignore")
      w.writeheader()
      w.writerows(rows)
    with open(os.path.join(tmp, "select.md"), "w") as f:
      f.write(_markdown(result))
  log(f"best epoch: {best} ({reason}); wrote {out_dir}")
  return result


def _markdown(r: dict) -> str:
  # Labels may hold '|' (|d|), which would split a markdown cell.
  head = "| epoch | " + " | ".join(l.replace("|", "\\|") for _, l in COLUMNS) + " | s |"
  lines = ["# Epoch selection", "", f"Run: `{r['workdir']}`", "",
           f"**Best epoch: {r['best_epoch']}** - {r['reason']}.", "",
           f"Held-out real accuracy of the classifier: {r['holdout_real_accuracy']:.3f}.", "",
           head, "|" + "---|" * (len(COLUMNS) + 2)]
  for row in r["rows"]:
    cells = [("n/a" if not np.isfinite(row[c]) else f"{row[c]:.4g}") for c, _ in COLUMNS]
    mark = " **<-**" if row["epoch"] == r["best_epoch"] else ""
    lines.append(f"| {row['epoch']}{mark} | " + " | ".join(cells) + f" | {row['seconds']} |")
  lines += ["", "![metrics against epoch](select.png)", ""]
  return "\n".join(lines)
