"""The utility study: do a run's synthetic slices help a classifier of held-out patients?

On a run trained with held-out subjects (config field data.holdout_fraction), condition
classifiers (evaluation/classifier.py) are trained on the GAN's training subjects in five
arms and tested on the held-out subjects, which neither the GAN nor any classifier saw:

| arm | trained on |
| --- | --- |
| real | the real training slices, drawn as often as the data has them |
| real, rebalanced | the same, each (level, pattern) condition drawn equally often |
| real, classic augmentation | rebalanced, with the classic augmentation (classifier.train(classic=True)) |
| real + synthetic | real slices and synthetic ones that bring every condition up to the largest one's count |
| real + synthetic, classic augmentation | the same with the classic augmentation |

With `evaluate.utility_synthetic_share` s > 0 the two synthetic arms draw like the
rebalanced one: every condition equally often, and a condition's synthetic slices s of
its draws (its real ones 1 - s). The last arm then differs from the classic one only in
that share of the draws; with 0 every slice, real or synthetic, is drawn equally often.

The synthetic slices pass the near-copy filter, whose reference is built from the
training subjects only (leave-one-subject-out): nothing about a test subject reaches the
GAN, a classifier or a threshold. Each arm trains with `seeds` seeds; the study reports
per arm the mean and 95 % confidence interval (t) of the overall accuracy, the balanced
accuracy (mean recall over the conditions), each condition's recall and the side
accuracy of unilateral defects, and for each arm with synthetic slices the paired
difference (same seed) to each arm without them, the best of those (by balanced accuracy
on the test subjects, which favours it) named.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable, Sequence

import numpy as np
from scipy import stats as scipy_stats

from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.errors import check_field, is_number, is_whole
from spect_fastgan_jax.evaluation import classifier
from spect_fastgan_jax.evaluation.score import Group
from spect_fastgan_jax.outputs import atomic_write

# arm -> (uses synthetic slices, rebalanced draw, classic augmentation)
ARMS = {
    "real": (False, False, False),
    "real, rebalanced": (False, True, False),
    "real, classic augmentation": (False, True, True),
    "real + synthetic": (True, False, False),
    "real + synthetic, classic augmentation": (True, False, True),
}


def check_config(cfg) -> None:
  """The study's fields of the `evaluate` block."""
  check_field(isinstance(cfg.utility_study, bool), "evaluate.utility_study", cfg.utility_study,
              "must be True or False")
  for field in ("utility_seeds", "utility_steps"):
    check_field(is_whole(cfg[field]) and cfg[field] >= 1, f"evaluate.{field}", cfg[field],
                "must be a whole number >= 1")
  share = cfg.utility_synthetic_share
  check_field(is_number(share) and 0 <= share < 1,
              "evaluate.utility_synthetic_share", share, "must be a number in [0, 1)")


def synthetic_counts(train: SliceDataset, levels: Sequence[str]) -> dict[tuple[str, str], int]:
  """Synthetic slices per condition that bring each up to the largest condition's count."""
  counts = {c: k for c, k in train.counts().items() if c[0] in levels and k > 0}
  top = max(counts.values())
  return {c: top - k for c, k in counts.items() if top > k}


def interval(values: Sequence[float], level: float = 0.95) -> dict:
  """Mean and its `level` confidence interval (Student's t) of `values`; a single value
  has no interval (None)."""
  v = np.asarray(values, float)
  mean = float(v.mean())
  if len(v) < 2:
    return {"mean": mean, "ci": None, "n": int(len(v))}
  half = float(scipy_stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
  return {"mean": mean, "ci": [mean - half, mean + half], "n": int(len(v))}


def _scores(acc: dict) -> dict:
  """One classifier's figures: overall, balanced accuracy, per-condition recall, side."""
  recall = acc["per_condition"]
  return {"overall": acc["overall"], "balanced": float(np.mean(list(recall.values()))),
          "recall": dict(recall), "side": acc["side"]}


def _summary(runs: list[dict]) -> dict:
  out = {k: interval([r[k] for r in runs]) for k in ("overall", "balanced")}
  out["recall"] = {c: interval([r["recall"][c] for r in runs]) for c in runs[0]["recall"]}
  sides = [r["side"] for r in runs if r["side"] is not None]
  out["side"] = interval(sides) if sides else None
  return out


def _paired(arm: list[dict], base: list[dict]) -> dict:
  """Per-seed differences arm - base (the same classifier seeds): mean and 95 % CI."""
  out = {k: interval([a[k] - b[k] for a, b in zip(arm, base)]) for k in ("overall", "balanced")}
  out["recall"] = {c: interval([a["recall"][c] - b["recall"][c] for a, b in zip(arm, base)])
                   for c in arm[0]["recall"]}
  return out


def _real_arm_paths(cache_dir: str, train: SliceDataset, test: SliceDataset, cfg,
                    levels) -> Callable[[str, int], str]:
  """(arm, seed) -> where that arm-without-synthetic-slices classifier's figures are
  cached: they depend on the training and test slices, the classifier block (steps
  included), the arm and the seed, never on the GAN. The slices are hashed once."""
  data = classifier.cache_key(train, cfg) + classifier.cache_key(test, cfg) + json.dumps(list(levels))

  def path(arm: str, seed: int) -> str:
    key = hashlib.sha256((data + json.dumps([arm, int(seed)])).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"utility-{key}.json")

  return path


def study(train: SliceDataset, test: SliceDataset, synthetic: Group, cfg, levels: Sequence[str],
          seeds: Sequence[int], steps: int, log: Callable[[str], None] = lambda m: None,
          synthetic_share: float = 0.0, cache_dir: str | None = None) -> dict:
  """Trains every arm of ARMS with each of `seeds` and tests it on `test`.

  Args:
    train: the real slices of the GAN's training subjects.
    test: the held-out subjects' slices (neither the GAN nor a classifier saw them).
    synthetic: the generated slices of `synthetic_counts(train, levels)`, near-copies
      already replaced.
    cfg: the `evaluate.classifier` block (architecture, batch, learning rate); every arm
      trains `steps` Adam steps.
    synthetic_share: evaluate.utility_synthetic_share (the module's docstring).
    cache_dir: where the figures of the arms without synthetic slices are kept per seed
      (the GAN does not change them), so that evaluating another epoch or another draw
      of the same run trains only the synthetic arms; None trains every arm.
  Returns:
    {"arms": {arm: {"overall", "balanced": {mean, ci, n}, "recall": {condition: ...},
    "side", "seeds": [each seed's figures]}}, "best_without_gan": arm (by balanced
    accuracy), "paired_vs_best_without_gan": {arm: {"overall", "balanced", "recall"}},
    "paired": {arm with synthetic slices: {arm without: the same}},
    "test_subjects": [...], "synthetic_counts": {condition: n}, "seeds", "steps"}.
  """
  train_cfg = cfg.copy_and_resolve_references()
  train_cfg.steps = int(steps)
  real = classifier.real_labelled(train)
  # A side-conditioned run's slices carry the side they were drawn with; others none.
  synth = classifier.Labelled.from_strings(synthetic.images, synthetic.level, synthetic.pattern,
                                           synthetic.side, synthetic=True)
  both = classifier.Labelled.concat([real, synth]) if len(synthetic.level) else real
  per_arm, reused = {}, []
  cached = None if cache_dir is None else _real_arm_paths(cache_dir, train, test, train_cfg, levels)
  for name, (with_synthetic, balance, classic) in ARMS.items():
    data = both if with_synthetic else real
    share = float(synthetic_share) if with_synthetic else 0.0
    balance = balance or share > 0
    per_arm[name] = []
    for s in seeds:
      path = None if with_synthetic or cached is None else cached(name, s)
      if path and os.path.exists(path):
        with open(path) as f:
          per_arm[name].append(json.load(f)["scores"])
        reused.append(f"{name}, seed {s}")
        log(f"utility study: {name}, seed {s}: reused {path}")
        continue
      log(f"utility study: {name} ({len(data.level)} samples, {steps} steps, seed {s})")
      trained = classifier.train(data, train_cfg, log, seed=int(s), balance=balance, classic=classic,
                                 synthetic_share=share)
      per_arm[name].append(_scores(classifier.accuracy(
          trained, test.slices[:, 1], test.level, test.pattern, test.side, levels)))
      if path:
        text = json.dumps({"arm": name, "seed": int(s), "scores": per_arm[name][-1]}).encode()
        atomic_write(path, lambda f: f.write(text), suffix=".json")
  without = [a for a, (synthetic_arm, _, _) in ARMS.items() if not synthetic_arm]
  # Chosen on the test subjects, so the difference to it leans against the synthetic arms;
  # the differences to every arm without synthetic slices are given too.
  best = max(without, key=lambda a: np.mean([r["balanced"] for r in per_arm[a]]))
  paired = {a: {b: _paired(per_arm[a], per_arm[b]) for b in without}
            for a, (synthetic_arm, _, _) in ARMS.items() if synthetic_arm}
  return {
      "arms": {a: {**_summary(runs), "seeds": runs} for a, runs in per_arm.items()},
      "best_without_gan": best,
      "paired_vs_best_without_gan": {a: d[best] for a, d in paired.items()},
      "paired": paired,
      "test_subjects": sorted(set(test.subject.tolist())),
      "synthetic_counts": {f"{l}/{p}": k for (l, p), k in synthetic_counts(train, levels).items()},
      "seeds": [int(s) for s in seeds], "steps": int(steps), "synthetic_share": float(synthetic_share),
      "reused": reused,
  }



def _f(x, digits: int = 3) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _ci(x: dict | None, digits: int = 3) -> str:
  if x is None:
    return "n/a"
  if x["ci"] is None:
    return _f(x["mean"], digits)
  return f"{_f(x['mean'], digits)} ({_f(x['ci'][0], digits)} to {_f(x['ci'][1], digits)})"


def draw_text(share: float) -> str:
  """How the synthetic arms draw their slices (evaluate.utility_synthetic_share), in words."""
  if not share:
    return "drawn as often as every real slice"
  return f"{share:.0%} of each condition's draws, every condition drawn equally often"


def markdown(label: str, u: dict) -> list[str]:
  """report.md's section for the study `u` of run `label`."""
  if "skipped" in u:
    return ["", f"## Utility: {label}", "", f"Not run: {u['skipped']}"]
  arms = u["arms"]
  conds = list(next(iter(arms.values()))["recall"])
  out = ["", f"## Utility: held-out patients classified with and without **{label}**'s synthetic slices", "",
         f"Trained on the GAN's training subjects, tested on {len(u['test_subjects'])} held-out "
         f"subjects neither the GAN nor a classifier saw; {len(u['seeds'])} classifier seeds per arm "
         f"({u['steps']} steps each); mean (95 % interval). Synthetic slices bring every condition to "
         "the largest one's count (" + ", ".join(f"{k} +{v}" for k, v in u["synthetic_counts"].items())
         + "), near-copies replaced (docs/utility.md); in the synthetic arms they are "
         + draw_text(u.get("synthetic_share", 0.0)) + ".", "",
         "| arm | balanced accuracy | overall | side | " + " | ".join(f"{c} recall" for c in conds) + " |",
         "|" + "---|" * (4 + len(conds))]
  for name, a in arms.items():
    out.append(f"| {name} | {_ci(a['balanced'])} | {_ci(a['overall'])} | {_ci(a['side'])} | "
               + " | ".join(_f(a["recall"][c]["mean"], 2) for c in conds) + " |")
  out += ["", "Paired differences (same classifier seed) against the best arm without synthetic "
          f"slices, **{u['best_without_gan']}**:", "",
          "| arm | balanced accuracy | overall | " + " | ".join(f"{c} recall" for c in conds) + " |",
          "|" + "---|" * (3 + len(conds))]
  for name, d in u["paired_vs_best_without_gan"].items():
    out.append(f"| {name} | {_ci(d['balanced'])} | {_ci(d['overall'])} | "
               + " | ".join(_ci(d["recall"][c], 2) for c in conds) + " |")
  return out
