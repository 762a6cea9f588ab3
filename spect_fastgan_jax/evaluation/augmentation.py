"""Usefulness for the paper's purpose, data augmentation: condition classifiers trained on
synthetic images only, and on real + synthetic, tested on the held-out real subjects
beside the real-only classifier (the cached reference)."""

from __future__ import annotations

from typing import Callable, Sequence

from spect_fastgan_jax.data.dataset import SliceDataset
from spect_fastgan_jax.evaluation import classifier
from spect_fastgan_jax.evaluation.score import Group


def study(ds: SliceDataset, ref: classifier.Reference, fake: Group, cfg, levels: Sequence[str],
          log: Callable[[str], None] = lambda m: None) -> dict:
  """Held-out real accuracy of classifiers trained on (a) the real training subjects
  (the reference), (b) `fake` only, (c) both. Same architecture, steps and seed.

  Generated images carry no side label, so (b)'s side head is untrained and its side
  accuracy is left out; (c) learns the side from its real part.

  Returns {"real only": score, "synthetic only": score, "real + synthetic": score}.
  """
  test = ds.subset(ref.holdout)
  train_real = classifier.real_labelled(ds.subset(~ref.holdout))
  synth = classifier.Labelled.from_strings(fake.images, fake.level, fake.pattern)
  out = {"real only": ref.holdout_accuracy}
  for name, data in (("synthetic only", synth),
                     ("real + synthetic", classifier.Labelled.concat([train_real, synth]))):
    log(f"augmentation study: training on {name} ({len(data.level)} samples)")
    trained = classifier.train(data, cfg, log)
    out[name] = classifier.accuracy(trained, test.slices[:, 1], test.level, test.pattern,
                                    test.side, levels)
  out["synthetic only"]["side"] = None
  return out
