"""Usefulness for the paper's purpose, data augmentation: condition classifiers trained on
synthetic images only, and on real + synthetic, tested on the held-out real subjects
beside a classifier trained on the real training subjects alone.

Every arm trains for `augmentation_steps` Adam steps, more than the reference classifier's
`classifier.steps`: real + synthetic holds about twice as many slices, and at the
reference's 600 steps even a perfect generator (the simulator with another seed,
experiments/fidelity/augmentation_perfect.py) scores below real alone (0.879 vs 0.899, 5 seeds);
at 1800 steps it scores 0.972 vs 0.966, at 3600 0.983 vs 0.953. One classifier's held-out
accuracy also moves with its training seed alone (~240 held-out slices), so each arm is
trained `augmentation_repeats` times, with training seeds seed, seed + 1, ...
(initialisation, batches, shifts; the subject split stays), and the report gives the
mean, the SD and every seed's figure."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.errors import check_field, is_whole
from spect_fastgan_jax.evaluation import classifier
from spect_fastgan_jax.evaluation.score import Group

ARMS = ("real only", "synthetic only", "real + synthetic")


def check_config(cfg) -> None:
  """The study's fields of the `evaluate` block."""
  check_field(isinstance(cfg.augmentation_study, bool), "evaluate.augmentation_study",
              cfg.augmentation_study, "must be True or False")
  v = cfg.augmentation_repeats
  check_field(is_whole(v) and v >= 1, "evaluate.augmentation_repeats", v, "must be a whole number >= 1")
  v = cfg.augmentation_steps
  check_field(is_whole(v) and v >= 1, "evaluate.augmentation_steps", v, "must be a whole number >= 1")


def study(ds: SliceDataset, ref: classifier.Reference, fake: Group, cfg, levels: Sequence[str],
          repeats: int = 1, steps: int | None = None,
          log: Callable[[str], None] = lambda m: None) -> dict:
  """Held-out real accuracy of classifiers trained on (a) the real training subjects,
  (b) `fake` only, (c) both; the architecture of `cfg` (the classifier block), `steps`
  Adam steps (default cfg.steps), `repeats` training seeds each (cfg.seed + r). Where
  `steps` is the reference's own, (a)'s first seed is the cached reference itself.

  Generated images carry no side label, so (b)'s side head is untrained and its side
  accuracy is left out; (c) learns the side from its real part.

  Returns {arm: score} for the arms of ARMS, where score has accuracy()'s keys holding
  the mean over the seeds, plus "sd" (the same keys, SD over the seeds; 0 with one seed),
  "seeds", "steps" and "repeats" (each seed's accuracy() result).
  """
  steps = int(cfg.steps) if steps is None else int(steps)
  train_cfg = cfg.copy_and_resolve_references()
  train_cfg.steps = steps
  test = ds.subset(ref.holdout)
  train_real = classifier.real_labelled(ds.subset(~ref.holdout))
  synth = classifier.Labelled.from_strings(fake.images, fake.level, fake.pattern)
  data = {"real only": train_real, "synthetic only": synth,
          "real + synthetic": classifier.Labelled.concat([train_real, synth])}
  seeds = [int(cfg.seed) + r for r in range(int(repeats))]
  out = {}
  for name in ARMS:
    runs = []
    for s in seeds:
      if name == "real only" and s == int(cfg.seed) and steps == int(cfg.steps):
        runs.append(ref.holdout_accuracy)
        continue
      log(f"augmentation study: training on {name} ({len(data[name].level)} samples, "
          f"{steps} steps, seed {s})")
      trained = classifier.train(data[name], train_cfg, log, seed=s)
      runs.append(classifier.accuracy(trained, test.slices[:, 1], test.level, test.pattern,
                                      test.side, levels))
    if name == "synthetic only":
      for r in runs:
        r["side"] = None
    out[name] = {**_summary(runs, seeds), "steps": steps}
  return out


def _summary(runs: list[dict], seeds: list[int]) -> dict:
  """Mean and SD over seeds of accuracy()'s numbers (None stays None)."""
  def stat(values, f):
    return None if any(v is None for v in values) else float(f(np.asarray(values, float)))

  mean, sd = {}, {}
  for k in ("overall", "pattern", "level", "side"):
    values = [r[k] for r in runs]
    mean[k], sd[k] = stat(values, np.mean), stat(values, np.std)
  keys = runs[0]["per_condition"]
  mean["per_condition"] = {c: float(np.mean([r["per_condition"][c] for r in runs])) for c in keys}
  return {**mean, "n": runs[0]["n"], "sd": sd, "seeds": seeds, "repeats": runs}
