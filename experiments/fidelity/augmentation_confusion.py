"""Where does the classifier trained on real + synthetic slices go wrong on held-out real subjects?

    python experiments/fidelity/augmentation_confusion.py RUN_WORKDIR EPOCH [--seeds 1,2] [--symmetric_flip]

Trains the augmentation study's real-alone and real + synthetic arms (the images
`--mode=evaluate` generates for RUN_WORKDIR at EPOCH, `evaluate.augmentation_steps` Adam
steps, the evaluation's subject split and classifier otherwise) at each training seed, and
prints, per arm, the confusion of the held-out real slices summed over the seeds: one row
per true (level, pattern), one column per predicted one. The off-diagonal cells the mixed
arm adds over real alone are the conditions the synthetic slices teach it to mistake.
"""

import argparse
import json

import study_common


def confusion(pred: dict, level, pattern, levels) -> "np.ndarray":
  """[true, predicted] counts over conditions.all_conditions(levels) of one classifier's
  predictions; the level counts only if the run has more than one, as classifier.score."""
  import numpy as np
  from spect_fastgan_jax import conditions
  names = [f"{l}/{q}" for l, q in conditions.all_conditions(levels)]
  index = {n: i for i, n in enumerate(names)}
  # The level head spans conditions.LEVELS.
  pl = np.asarray(conditions.LEVELS)[pred["level"].argmax(1)] if len(levels) > 1 else np.asarray(level)
  pp = np.asarray(conditions.PATTERNS)[pred["pattern"].argmax(1)]
  out = np.zeros((len(names), len(names)), int)
  for t_l, t_p, p_l, p_p in zip(level, pattern, pl, pp):
    out[index[f"{t_l}/{t_p}"], index[f"{p_l}/{p_p}"]] += 1
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("epoch", type=int)
  p.add_argument("--seeds", default="1,2", help="classifier training seeds (0 is --mode=evaluate's first)")
  p.add_argument("--symmetric_flip", action="store_true", help="sample as sample.symmetric_flip does")
  args = p.parse_args()

  import numpy as np
  from spect_fastgan_jax import conditions
  from spect_fastgan_jax.evaluation import classifier

  ecfg, levels, test, arms = study_common.study_arms(args.workdir, args.epoch, args.symmetric_flip)
  names = [f"{l}/{q}" for l, q in conditions.all_conditions(levels)]
  counts = test.counts()
  rows = [i for i, (l, q) in enumerate(conditions.all_conditions(levels)) if counts[(l, q)]]
  cfg = ecfg.classifier.copy_and_resolve_references()
  cfg.steps = int(ecfg.augmentation_steps)
  out = {}
  for arm, data in arms.items():
    total = sum(confusion(classifier.train(data, cfg, seed=int(s)).predict(test.slices[:, 1]),
                          test.level, test.pattern, levels) for s in args.seeds.split(","))
    out[arm] = total
    print(f"\n{arm}, seeds {args.seeds}, {cfg.steps} steps: rows true, columns predicted")
    print(f"{'':16s}" + "".join(f"{m:>16s}" for m in names))
    for i in rows:
      print(f"{names[i]:16s}" + "".join(f"{v:16d}" for v in total[i]))
    print(f"wrong: {total.sum() - np.trace(total)} of {total.sum()}", flush=True)
  diff = out["real + synthetic"] - out["real only"]
  print("\nmistakes the mixed arm adds (+) or removes (-), true -> predicted:")
  for i, j in zip(*np.nonzero(diff)):
    if i != j:
      print(f"  {names[i]:16s} -> {names[j]:16s} {diff[i, j]:+d}")
  print(json.dumps({arm: {names[i]: dict(zip(names, map(int, m[i]))) for i in rows} for arm, m in out.items()}))


if __name__ == "__main__":
  main()
