"""Where does the classifier trained on real + synthetic slices go wrong on held-out real subjects?

    python benchmarks/augmentation_confusion.py RUN_WORKDIR EPOCH [--seeds 1,2] [--symmetric_flip]

Trains the augmentation study's real-alone and real + synthetic arms (the images
`--mode=evaluate` generates for RUN_WORKDIR at EPOCH, `evaluate.augmentation_steps` Adam
steps, the evaluation's subject split and classifier otherwise) at each training seed, and
prints, per arm, the confusion of the held-out real slices summed over the seeds: one row
per true (level, pattern), one column per predicted one. The off-diagonal cells the mixed
arm adds over real alone are the conditions the synthetic slices teach it to mistake.
"""

import argparse
import json

import common


def confusion(pred: dict, level, pattern, names: list[str]) -> dict:
  """{true condition: {predicted condition: count}} of one classifier's predictions."""
  import numpy as np
  from spect_fastgan_jax import conditions
  # The level head spans conditions.LEVELS; with one level in the run, only the pattern counts.
  one_level = len({n.split("/")[0] for n in names}) == 1
  pl = np.asarray(level) if one_level else np.asarray(conditions.LEVELS)[pred["level"].argmax(1)]
  pp = np.asarray(conditions.PATTERNS)[pred["pattern"].argmax(1)]
  out = {n: {m: 0 for m in names} for n in names}
  for t_l, t_p, p_l, p_p in zip(level, pattern, pl, pp):
    guess = f"{p_l}/{p_p}"
    if guess in out[f"{t_l}/{t_p}"]:
      out[f"{t_l}/{t_p}"][guess] += 1
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("epoch", type=int)
  p.add_argument("--seeds", default="1,2", help="classifier training seeds (0 is --mode=evaluate's first)")
  p.add_argument("--symmetric_flip", action="store_true", help="sample as sample.symmetric_flip does")
  args = p.parse_args()

  from spect_fastgan_jax import conditions
  from spect_fastgan_jax.evaluation import classifier

  ecfg, levels, test, arms = common.study_arms(args.workdir, args.epoch, args.symmetric_flip)
  names = [f"{l}/{q}" for l, q in conditions.all_conditions(levels)
           if ((test.level == l) & (test.pattern == q)).any()]
  cfg = ecfg.classifier.copy_and_resolve_references()
  cfg.steps = int(ecfg.augmentation_steps)
  out = {}
  for arm, data in arms.items():
    total = {n: {m: 0 for m in names} for n in names}
    for s in (int(x) for x in args.seeds.split(",")):
      t = classifier.train(data, cfg, seed=s)
      c = confusion(t.predict(test.slices[:, 1]), test.level, test.pattern, names)
      for n in names:
        for m in names:
          total[n][m] += c[n][m]
    out[arm] = total
    print(f"\n{arm}, seeds {args.seeds}, {cfg.steps} steps: rows true, columns predicted")
    print(f"{'':16s}" + "".join(f"{m:>16s}" for m in names))
    for n in names:
      print(f"{n:16s}" + "".join(f"{total[n][m]:16d}" for m in names))
    wrong = sum(total[n][m] for n in names for m in names if m != n)
    print(f"wrong: {wrong} of {sum(sum(r.values()) for r in total.values())}", flush=True)
  diff = {n: {m: out["real + synthetic"][n][m] - out["real only"][n][m] for m in names if m != n} for n in names}
  print("\nmistakes the mixed arm adds (+) or removes (-), true -> predicted:")
  for n in names:
    for m, v in diff[n].items():
      if v:
        print(f"  {n:16s} -> {m:16s} {v:+d}")
  print(json.dumps(out))


if __name__ == "__main__":
  main()
