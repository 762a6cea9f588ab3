"""How often the side criterion fails a generator that draws sides exactly as the data does.

The criterion's binomial test takes the real left share as a known probability, but the
real share is itself measured on n real slices. For a perfect generator (left with the
same probability p as the real slices) this simulates both shares and counts the test's
failures (P < 0.05). Against a known p (an even split, the target of a run that flips
unilateral slices in training) the test fails 5 % of the time, as a test at 0.05 should.

  python experiments/robust_fidelity/side_test_error.py --n_real 291 --n_fake 291
"""

import argparse

import numpy as np
from scipy import stats


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n_real", type=int, default=291, help="real unilateral slices")
  parser.add_argument("--n_fake", type=int, default=291, help="generated unilateral slices")
  parser.add_argument("--p", type=float, default=0.5, help="the true left share of both")
  parser.add_argument("--trials", type=int, default=20000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  real = rng.binomial(args.n_real, args.p, args.trials) / args.n_real
  fake = rng.binomial(args.n_fake, args.p, args.trials)
  against_real = np.mean([stats.binomtest(int(k), args.n_fake, r).pvalue < 0.05 for k, r in zip(fake, real)])
  against_p = np.mean([stats.binomtest(int(k), args.n_fake, args.p).pvalue < 0.05 for k in fake])
  print(f"perfect generator, {args.n_fake} generated and {args.n_real} real unilateral slices, "
        f"true left share {args.p}, {args.trials} trials:")
  print(f"  binomial P < 0.05 against the measured real share: {against_real:.1%}")
  print(f"  binomial P < 0.05 against the true share {args.p}: {against_p:.1%}")


if __name__ == "__main__":
  main()
