"""What the fidelity studies in this folder share: the repository on sys.path, a trained
run's images as --mode=evaluate generates them, and the augmentation study's arms and
their held-out real accuracy. The performance tools' helpers are in benchmarks/common.py."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def run_images(workdir: str, symmetric_flip: bool = False):
  """A trained run's images as --mode=evaluate generates them: (the run's config, the
  evaluate config, its real data set, the real Group, images(epoch, seed) -> generated
  Group at Table 1 counts). Sampled with `symmetric_flip` as given, whatever the run's
  config.json says, so a script sees the generator's own output unless it asks."""
  from configs import evaluate as eval_config
  from spect_fastgan_jax import data
  from spect_fastgan_jax import workdir as workdir_lib
  from spect_fastgan_jax import sample
  from spect_fastgan_jax.evaluation import generated
  from spect_fastgan_jax.evaluation.generated import real_counts
  from spect_fastgan_jax.evaluation.report import real_group
  run_config = workdir_lib.require_run_config(workdir)
  run_config.sample.symmetric_flip = symmetric_flip
  ecfg = eval_config.get_config()
  ds = data.load_training_set(run_config.data, log=lambda m: None)
  real = real_group(ds)
  generator = sample.RunGenerator(run_config, workdir)

  def images(epoch: int, seed: int):
    return generated.images(generator, epoch, real_counts(real), seed, "generated", int(ecfg.batch_size))

  return run_config, ecfg, ds, real, images


def study_arms(workdir: str, epoch: int, symmetric_flip: bool = False):
  """The augmentation study's real-alone and real + synthetic arms on a run's images at
  `epoch`, as --mode=evaluate builds them (its subject split and cached classifier):
  (the evaluate config, the run's levels, the held-out real SliceDataset,
  {"real only": Labelled, "real + synthetic": Labelled}). Prints the slice counts."""
  from spect_fastgan_jax import conditions
  from spect_fastgan_jax.evaluation import classifier
  run_config, ecfg, ds, _, images = run_images(workdir, symmetric_flip)
  levels = conditions.check_levels(run_config.data.levels)
  ref = classifier.reference(ds, ecfg.classifier, classifier.cache_dir(workdir), print)
  fake = images(epoch, int(ecfg.seed))
  test = ds.subset(ref.holdout)
  train_real = classifier.real_labelled(ds.subset(~ref.holdout))
  synth = classifier.Labelled.from_strings(fake.images, fake.level, fake.pattern)
  arms = {"real only": train_real, "real + synthetic": classifier.Labelled.concat([train_real, synth])}
  print(f"slices: real only {len(train_real.level)}, real + synthetic {len(arms['real + synthetic'].level)}; "
        f"held-out real {len(test.level)}")
  return ecfg, levels, test, arms


def arms_by_steps(arms: dict, classifier_cfg, test, levels, steps: list[int], repeats: int,
                  first_seed: int = 0) -> dict:
  """Held-out real accuracy of the evaluation's classifier trained on each of `arms`
  ({name: Labelled}) at each step count, training seeds first_seed..first_seed+repeats-1
  (`--mode=evaluate` trains classifier.seed + 0..augmentation_repeats-1); `test` is the
  held-out real SliceDataset. Prints a line per (steps, arm), then each held-out
  condition's accuracy (mean over the seeds, with its slice count), and returns
  {"<steps> steps, <arm>": {"mean", "sd", "seeds", "per_condition": {"BG/normal": mean}}}."""
  import numpy as np
  from spect_fastgan_jax.evaluation import classifier
  counts = {f"{l}/{p}": n for (l, p), n in test.counts().items()}
  out = {}
  for n in steps:
    cfg = classifier_cfg.copy_and_resolve_references()
    cfg.steps = int(n)
    for name, d in arms.items():
      acc, per = [], []
      for s in range(first_seed, first_seed + repeats):
        t = classifier.train(d, cfg, seed=s)
        a = classifier.accuracy(t, test.slices[:, 1], test.level, test.pattern, test.side, levels)
        acc.append(a["overall"])
        per.append(a["per_condition"])
        print(f"{n:5d} steps  {name:17s} seed {s}: {a['overall']:.4f}", flush=True)
      per_mean = {c: round(float(np.mean([q[c] for q in per])), 4) for c in per[0]}
      out[f"{n} steps, {name}"] = {"mean": round(float(np.mean(acc)), 4),
                                   "sd": round(float(np.std(acc)), 4),
                                   "seeds": [round(a, 4) for a in acc],
                                   "per_condition": per_mean}
      print(f"{n:5d} steps  {name:17s} {np.mean(acc):.3f} (SD {np.std(acc):.3f}) "
            f"{' '.join(f'{a:.3f}' for a in acc)}", flush=True)
      print("             " + "  ".join(f"{c} {v:.3f} (n {counts.get(c, 0)})" for c, v in per_mean.items()),
            flush=True)
  return out
