"""Is the augmentation study's fixed step count fair to the larger real + synthetic set?

    python experiments/fidelity/augmentation_steps.py RUN_WORKDIR EPOCH [--steps 600,1200,2400] [--repeats 3]
        [--first_seed 0] [--symmetric_flip]

The study (evaluation/augmentation.py) trains every arm for `evaluate.classifier.steps`
Adam steps of 32. Real + synthetic holds about twice as many slices as real alone, so at
equal steps it sees each slice about half as often. This trains both arms at each step
count (training seeds first_seed..first_seed+repeats-1, the evaluation's subject split and classifier
settings otherwise) on the images `--mode=evaluate` generates for RUN_WORKDIR at EPOCH
(sampled plainly unless --symmetric_flip), and prints the held-out real accuracy (mean,
SD, each seed; then per held-out condition, mean over the seeds). If real alone has converged at the study's steps while real + synthetic
still climbs, equal steps understate what the synthetic slices add.
"""

import argparse
import json

import study_common


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("epoch", type=int)
  p.add_argument("--steps", default="600,1200,2400")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--first_seed", type=int, default=0,
                 help="first classifier training seed; with the default evaluate.classifier.seed (0), "
                      "seeds 0..2 are --mode=evaluate's own three")
  p.add_argument("--symmetric_flip", action="store_true", help="sample as sample.symmetric_flip does")
  args = p.parse_args()

  ecfg, levels, test, arms = study_common.study_arms(args.workdir, args.epoch, args.symmetric_flip)
  out = study_common.arms_by_steps(arms, ecfg.classifier, test, levels,
                             [int(s) for s in args.steps.split(",")], args.repeats, args.first_seed)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
