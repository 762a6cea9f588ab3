"""Training speed of the condition classifier, the unit cost of the utility study.

    python benchmarks/classifier_speed.py [--steps=300] [--repeats=3]

Trains the evaluate block's classifier (configs/evaluate.py) on the embedded default
set's training slices for `steps` steps in each of the utility study's kinds of draw
(plain, rebalanced, classic augmentation) and prints the median seconds per 1000 steps
over `repeats` runs after a compile run, and what one utility study (5 arms x
evaluate.utility_seeds seeds x evaluate.utility_steps steps) then costs.
"""

import argparse
import statistics
import time

from configs import data as data_config
from configs import evaluate as evaluate_config
from spect_fastgan_jax import data
from spect_fastgan_jax.evaluation import classifier, utility


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  ecfg = evaluate_config.get_config()
  cfg = ecfg.classifier.copy_and_resolve_references()
  cfg.steps = args.steps
  ds = data.load_training_set(data_config.get_config(), log=lambda m: None)
  real = classifier.real_labelled(ds)
  per_kind = {}
  for name, balance, classic in (("plain", False, False), ("rebalanced", True, False),
                                 ("classic augmentation", True, True)):
    classifier.train(real, cfg, seed=0, balance=balance, classic=classic)   # compile
    times = []
    for r in range(args.repeats):
      t0 = time.perf_counter()
      classifier.train(real, cfg, seed=r + 1, balance=balance, classic=classic)
      times.append(time.perf_counter() - t0)
    per_kind[name] = 1000 * statistics.median(times) / args.steps
    print(f"{name}: {per_kind[name]:.1f} s per 1000 steps (median of {args.repeats}; "
          f"runs {', '.join(f'{t:.1f}' for t in times)} s for {args.steps} steps)")
  mean = statistics.mean(per_kind.values())
  study = len(utility.ARMS) * int(ecfg.utility_seeds) * int(ecfg.utility_steps) * mean / 1000
  print(f"one utility study: {len(utility.ARMS)} arms x {ecfg.utility_seeds} seeds x "
        f"{ecfg.utility_steps} steps = about {study / 60:.0f} min")


if __name__ == "__main__":
  main()
