"""Can real + synthetic beat real alone at all? The augmentation study with a perfect generator.

    python experiments/fidelity/augmentation_perfect.py [--steps 600,1800] [--repeats 5] [--sim_seed 1]

A generator that draws exactly from the data's distribution is, on the embedded default
set, the simulator itself run with another seed: new subjects, the same Table 1 counts,
the same physics. This trains the study's classifier (evaluation/augmentation.py; the
evaluation's subject split and classifier settings) on the real training subjects alone
and on them plus such a fresh simulated set (labels as generated images carry them: level
and pattern, no side), at each step count and training seeds 0..repeats-1, and prints
the held-out real accuracy (mean, SD, each seed). If real + perfect does not beat real
alone at the study's steps, the study cannot credit any generator at those steps.
"""

import argparse
import json

import study_common


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--steps", default="600,1800")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--sim_seed", type=int, default=1, help="the perfect generator's simulator seed (the data's is 0)")
  args = p.parse_args()

  from configs import data as data_config
  from configs import evaluate as eval_config
  from spect_fastgan_jax import conditions, data
  from spect_fastgan_jax.evaluation import classifier

  dcfg = data_config.get_config()
  levels = conditions.check_levels(dcfg.levels)
  ds = data.load_training_set(dcfg, log=lambda m: None)
  fresh_cfg = dcfg.copy_and_resolve_references()
  fresh_cfg.simulation.seed = args.sim_seed
  fresh = data.load_training_set(fresh_cfg, log=lambda m: None)
  ecfg = eval_config.get_config()
  # The evaluation's subject split (classifier.reference draws the same), without training
  # a reference classifier that only that split would be taken from.
  holdout = classifier.subject_split(ds, float(ecfg.classifier.holdout_fraction), int(ecfg.classifier.seed))
  test = ds.subset(holdout)
  train_real = classifier.real_labelled(ds.subset(~holdout))
  perfect = classifier.Labelled.from_strings(fresh.slices[:, 1], fresh.level, fresh.pattern)
  arms = {"real only": train_real, "real + perfect": classifier.Labelled.concat([train_real, perfect])}
  print(f"slices: real only {len(train_real.level)}, real + perfect {len(arms['real + perfect'].level)}; "
        f"held-out real {len(test.level)}", flush=True)
  out = study_common.arms_by_steps(arms, ecfg.classifier, test, levels,
                             [int(s) for s in args.steps.split(",")], args.repeats)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
