"""Does keeping only the generated slices that D's own condition head reads as typical of
their condition help the augmentation study?

    python experiments/fidelity/aux_filter.py RUN_WORKDIR EPOCH [--quantile 0.1] [--repeats 8]
        [--first_seed 0] [--steps 1800] [--symmetric_flip] [--arms filtered,plain,real] [--evaluate]

A run trained with `loss.condition_aux` > 0 has an auxiliary condition head on D (AC-GAN).
This takes D from the run's training state at EPOCH (the run needs one there:
`checkpoint.keep_train_states` large enough), refits its BatchNorm statistics to the real
slices (training's running statistics mix real and fake batches of 4 and leave the head at
chance in evaluation mode), and reads every image with the head: its log-probability of
the asked condition (a softmax over the level block plus one over the pattern block). An
image below the --quantile of the real slices' own log-probabilities in that condition is
rejected (--quantile 0: rejected where the head's argmax is another condition). Images are
drawn as --mode=sample --reject_near_copies draws them: slot k gets sample index k, a
rejected image's slot the next unused index, so each kept image is the image of its
(seed, index).

Prints how often the head agrees on the real slices and what it rejects, optionally writes
the full --mode=evaluate report of the filtered images (--evaluate, without the study, into
<workdir>/evaluation/epoch_XXXX_seedS_aux_filter_qQ), then trains the study's classifier
(the evaluation's subject split and settings, --steps Adam steps) on each of --arms, one
classifier seed of every arm at a time, and prints their held-out real accuracy.
"""

import argparse
import collections
import json

import study_common


def head_logits_fn(d, d_vars, peak, batch=256):
  """(images [N, 64, 64] in [0, 1], condition rows [N, C]) -> D's head logits [N, C], in
  padded batches of `batch` through one compiled program."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from spect_fastgan_jax import augment

  @jax.jit
  def f(x, y):
    _, upd = d.apply(d_vars, augment.to_model_range(x, peak), y, train=False, mutable=["intermediates"])
    return upd["intermediates"]["aux_logits"][0]

  def logits(images, cond):
    out = []
    for s in range(0, len(images), batch):
      x, y = images[s:s + batch], cond[s:s + batch]
      pad = batch - len(x)
      if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        y = np.concatenate([y, np.repeat(y[:1], pad, 0)])
      out.append(np.asarray(f(jnp.asarray(x), jnp.asarray(y)))[: batch - pad])
    return np.concatenate(out)

  return logits


def refit_d_stats(d, d_vars, images, cond, peak, passes=60):
  """D's BatchNorm running statistics refitted to the real slices: D runs in training mode
  on all of `images` at once, `passes` times (momentum 0.9: 0.9**60 < 0.2 %), so that
  evaluation mode normalises as a batch of real slices does. Training's running statistics
  mix the real and the fake passes of batches of 4 and do not fit either."""
  import jax
  import jax.numpy as jnp
  from spect_fastgan_jax import augment, train_state
  x, y = augment.to_model_range(jnp.asarray(images), peak), jnp.asarray(cond)

  @jax.jit
  def once(stats):
    _, upd = d.apply({"params": d_vars["params"], "batch_stats": stats}, x, y, train=True,
                     mutable=["batch_stats", "intermediates"])
    return train_state.batch_norm_only(stats, upd["batch_stats"])

  stats = d_vars["batch_stats"]
  for _ in range(passes):
    stats = once(stats)
  return {"params": d_vars["params"], "batch_stats": stats}


def condition_blocks(n_levels, width):
  """The one-hot blocks of a condition vector: the level block (if any), the pattern block."""
  return ([slice(0, n_levels)] if n_levels else []) + [slice(n_levels, width)]


def agrees(logits, cond, n_levels):
  """[N] bool: the head's argmax in each block is the asked entry."""
  import numpy as np
  ok = np.ones(len(logits), bool)
  for b in condition_blocks(n_levels, logits.shape[1]):
    ok &= np.argmax(logits[:, b], 1) == np.argmax(cond[:, b], 1)
  return ok


def log_prob(logits, cond, n_levels):
  """[N]: the head's log-probability of the asked condition, a softmax over each block."""
  import numpy as np
  from scipy.special import log_softmax
  rows = np.arange(len(logits))
  return sum(log_softmax(logits[:, b], axis=1)[rows, np.argmax(cond[:, b], 1)]
             for b in condition_blocks(n_levels, logits.shape[1]))


class HeadFilter:
  """The run's D at `epoch` with its BatchNorm refitted to the real slices; `reject(images,
  level, pattern)` -> (reject [N] bool, the head's log-probability of the asked condition [N])."""

  def __init__(self, run_config, workdir, epoch, real, quantile=0.0):
    import numpy as np
    from spect_fastgan_jax import checkpoints, conditions, train
    from spect_fastgan_jax import train_state as ts_lib
    self.levels = conditions.check_levels(run_config.data.levels)
    self.n_levels = len(self.levels) if len(self.levels) > 1 else 0
    g, d = train.networks(run_config)
    like = ts_lib.create_train_state(run_config, g, d)
    state = checkpoints.RunCheckpoints(workdir, keep_train_states=100000).restore_train(epoch, like)
    peak = float(run_config.model.output_peak)
    real_cond = conditions.encode(self.levels, real.level, real.pattern)
    d_vars = refit_d_stats(d, {"params": state.d_params, "batch_stats": state.d_stats},
                           real.images, real_cond, peak)
    self.logits = head_logits_fn(d, d_vars, peak)
    real_logits = self.logits(real.images, real_cond)
    self.real_ok = agrees(real_logits, real_cond, self.n_levels)
    # Per condition, the q-quantile of the real slices' log-probability of their own
    # condition: an image less typical of its condition than that is rejected.
    self.quantile = quantile
    real_lp = log_prob(real_logits, real_cond, self.n_levels)
    self.threshold = {(l, p): float(np.quantile(real_lp[real.mask(p, l)], quantile))
                      for l, p in real.conditions()}

  def reject(self, images, level, pattern):
    """quantile 0: reject where the head's argmax is not the asked condition; else where
    its log-probability is below the real slices' q-quantile for that condition."""
    import numpy as np
    from spect_fastgan_jax import conditions
    cond = conditions.encode(self.levels, level, pattern)
    lg = self.logits(images, cond)
    lp = log_prob(lg, cond, self.n_levels)
    if self.quantile == 0:
      return ~agrees(lg, cond, self.n_levels), lp
    thr = np.array([self.threshold[(l, p)] for l, p in zip(level, pattern)])
    return lp < thr, lp


def filtered_images(head: HeadFilter, record: dict):
  """A replacement for evaluation.generated.images that draws as the near-copy filter does
  (sample.draw_without_near_copies: slot k gets index k, a rejected image's slot the next
  unused index), rejecting what D's head does not read as its condition."""
  from spect_fastgan_jax.evaluation.score import Group

  def images(gen, epoch, counts, seed, name, batch_size=256, near_copy=None):
    drawn = gen.draw(epoch, counts, seed, batch_size, near_copy=head.reject)
    n, dropped = len(drawn.level), drawn.dropped
    by = dict(collections.Counter(f"{r['level']}/{r['pattern']}" for r in dropped))
    # Of the evaluation's own images (sample indices 0..N-1), the share the filter kept.
    first = collections.Counter(f"{r['level']}/{r['pattern']}" for r in dropped if r["index"] < n)
    record.update({"drawn": int(n + len(dropped)), "dropped_by_condition": by,
                   "kept_of_first_n": {f"{l}/{p}": round(1 - first[f"{l}/{p}"] / k, 3)
                                       for (l, p), k in counts.items()}})
    print(f"D's head filter: dropped {len(dropped)} of {n + len(dropped)} drawn: {by}", flush=True)
    return Group(name, drawn.images, drawn.level, drawn.pattern)

  return images


def main():
  p = argparse.ArgumentParser()
  p.add_argument("workdir")
  p.add_argument("epoch", type=int)
  p.add_argument("--repeats", type=int, default=8)
  p.add_argument("--first_seed", type=int, default=0)
  p.add_argument("--steps", type=int, default=1800)
  p.add_argument("--symmetric_flip", action="store_true")
  p.add_argument("--arms", default="filtered,plain,real")
  p.add_argument("--quantile", type=float, default=0.1,
                 help="reject images whose head log-probability of their condition is below this "
                      "quantile of the real slices' (0: reject where the head's argmax disagrees)")
  p.add_argument("--evaluate", action="store_true",
                 help="also write the full --mode=evaluate report of the filtered images into "
                      "<workdir>/evaluation/epoch_XXXX_seedS_aux_filter_qQ (Q: --quantile)")
  args = p.parse_args()

  import os
  import numpy as np
  from spect_fastgan_jax.evaluation import classifier, report
  from spect_fastgan_jax import sample
  from spect_fastgan_jax.evaluation import generated
  from spect_fastgan_jax.evaluation.generated import real_counts

  run_config, ecfg, ds, real, plain_images = study_common.run_images(args.workdir, args.symmetric_flip)
  head = HeadFilter(run_config, args.workdir, args.epoch, real, args.quantile)
  print(f"D's head on the real slices: {head.real_ok.mean():.3f} agree; per condition "
        + ", ".join(f"{l}/{p} {head.real_ok[real.mask(p, l)].mean():.3f}" for l, p in real.conditions()),
        flush=True)
  plain = plain_images(args.epoch, int(ecfg.seed))
  record = {}
  # The evaluation draws through generated.images: replaced, report.evaluate below draws filtered.
  generated.images = filtered_images(head, record)
  filt = generated.images(sample.RunGenerator(run_config, args.workdir), args.epoch, real_counts(real),
                          int(ecfg.seed), "generated", int(ecfg.batch_size))
  print(json.dumps(record))

  if args.evaluate:
    label = os.path.basename(os.path.normpath(args.workdir))
    out = os.path.join(args.workdir, "evaluation", f"epoch_{args.epoch:04d}_seed{int(ecfg.seed)}_aux_filter_q{args.quantile:g}")
    e = ecfg.copy_and_resolve_references()
    e.augmentation_study = False   # the arms below are the study, over --repeats seeds
    report.evaluate([report.RunSpec(label, args.workdir, run_config, args.epoch)], ds, e, out,
                    classifier.cache_dir(args.workdir), True, print)
    print(f"wrote {out}")

  if not args.arms:
    return
  ref = classifier.reference(ds, ecfg.classifier, classifier.cache_dir(args.workdir), print)
  test = ds.subset(ref.holdout)
  train_real = classifier.real_labelled(ds.subset(~ref.holdout))
  arms = {}
  for name in args.arms.split(","):
    if name == "real":
      arms["real only"] = train_real
    else:
      grp = filt if name == "filtered" else plain
      synth = classifier.Labelled.from_strings(grp.images, grp.level, grp.pattern)
      arms[f"real + synthetic ({name})"] = classifier.Labelled.concat([train_real, synth])
  # One classifier seed of every arm at a time, so that a study cut short stays paired.
  seeds = {name: [] for name in arms}
  for s in range(args.first_seed, args.first_seed + args.repeats):
    out = study_common.arms_by_steps(arms, ecfg.classifier, test, head.levels, [args.steps], 1, s)
    for name in arms:
      seeds[name].append(out[f"{args.steps} steps, {name}"]["mean"])
    print(json.dumps({"seed": s, **{name: out[f"{args.steps} steps, {name}"] for name in arms}}), flush=True)
  for name, acc in seeds.items():
    print(f"{name}: {np.mean(acc):.4f} (SD {np.std(acc):.4f}) over seeds "
          f"{args.first_seed}..{args.first_seed + len(acc) - 1}: {' '.join(f'{a:.4f}' for a in acc)}")


if __name__ == "__main__":
  main()
