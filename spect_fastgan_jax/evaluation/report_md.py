"""report.md of --mode=evaluate, from the result dict `report.evaluate` builds (the same
numbers as report.json): tables, P-values, the criteria and the memorisation audit."""

from __future__ import annotations

import numpy as np

from spect_fastgan_jax.evaluation import criteria, score, stats, utility


def _p(p) -> str:
  if p is None or not np.isfinite(p):
    return "n/a"
  return "< 0.0001" if p < 1e-4 else f"{p:.4f}" if p < 0.01 else f"{p:.2f}"


def _f(x, digits=3) -> str:
  return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _stats_table(block: dict, labels: list[str]) -> list[str]:
  head = "| | metric | real | " + " | ".join(f"{l} (P vs real)" for l in labels) + " | ANOVA P |"
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for key, per_metric in block.items():
    for m, (_, label) in score.PER_IMAGE.items():
      c = per_metric[m]
      cells = [f"{_f(c['mean'].get('real'))} +/- {_f(c['sd'].get('real'))} (n={c['n'].get('real')})"]
      for l in labels:
        if l in c["mean"]:
          p = c["dunnett_p"].get(l)
          cells.append(f"{_f(c['mean'][l])} +/- {_f(c['sd'][l])} ({_p(p)} {stats.stars(p) if p is not None else ''})")
        else:
          cells.append("-")
      lines.append(f"| {key} | {label} | " + " | ".join(cells) + f" | {_p(c['anova_p'])} |")
  return lines


def markdown(r: dict) -> str:
  """report.md from evaluate()'s result dict."""
  labels = [x["label"] for x in r["runs"]]
  out = ["# Fidelity report", "",
         "Runs: " + "; ".join(f"**{x['label']}** epoch {x['epoch']} (levels {', '.join(x['levels'])}, "
                              + (("normal, bilateral and unilateral" if x.get("flip_unilateral") else
                                  "normal and bilateral") + " images flipped left/right at random "
                                 "(sample.symmetric_flip), " if x.get("symmetric_flip") else "")
                              + f"`{x['workdir']}`)" for x in r["runs"]),
         f"Generated with seed {r['seed']}, sample indices 0..N-1; as many images per condition as the "
         "real set: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items()) + ".",
         "All metrics on max-normalised slices (real: the centre slice); LR = patient-left / "
         "patient-right counts (columns 32-63 / 0-31). See docs/evaluation.md for what each "
         "metric can and cannot tell.", ""]
  out += _criteria_md(r, labels)
  out += ["## The paper's comparison, per pattern (levels pooled; Fig. 5)", "",
         "Mean +/- SD; P: Dunnett's test against real (with one run: the t-test); ANOVA over "
         "real and all runs. * P < 0.05, ** < 0.01, *** < 0.001, **** < 0.0001.", ""]
  out += _stats_table(r["paper"]["per_pattern"], labels)
  out += ["", "![Fig. 5](fig5_boxplots.png)", "", "## Per level and pattern", ""]
  out += _stats_table(r["paper"]["per_condition"], labels)
  if len(labels) > 1:
    out += ["", "Tukey HSD, every pair (per pattern):", ""]
    for key, per_metric in r["paper"]["per_pattern"].items():
      for m, c in per_metric.items():
        out.append(f"- {key} {m}: " + ", ".join(f"{k} {_p(v)}" for k, v in c["tukey_p"].items()))
  out += ["", "## Diversity: mean pixel-wise SD (Fig. 6) and pairwise MS-SSIM", "",
          "| | real SD | " + " | ".join(f"{l} SD" for l in labels) + " | "
          + " | ".join(f"{l} MS-SSIM (real) / diversity ratio" for l in labels) + " |",
          "|" + "---|" * (2 + 2 * len(labels))]
  for key, sds in r["paper"]["pixelwise_sd"].items():
    if "/" not in key:
      continue
    cells = [_f(sds.get(l)) if l in sds else "-" for l in labels]
    for l in labels:
      pc = r["runs_scores"][l]["per_condition"].get(key)
      cells.append(f"{_f(pc['ms_ssim_fake'])} ({_f(pc['ms_ssim_real'])}) / {_f(pc['diversity_ratio'], 2)}"
                   if pc else "-")
    out.append(f"| {key} | {_f(sds['real'])} | " + " | ".join(cells) + " |")
  out += ["", "Diversity ratio = (1 - MS-SSIM generated) / (1 - MS-SSIM real): 1 = as varied as the "
          "real slices, near 0 = collapsed.", "", "![Fig. 6](fig6_maps.png)", "",
          "## Condition fidelity (classifier trained on real subjects)", "",
          f"Held-out real subjects: {r['classifier']['holdout_subjects']}"
          + (" (held out of GAN training too: patients no run under test has seen)"
             if r.get("test_subjects", {}).get("unseen_by_the_runs") else
             " (the runs trained on them: the GAN saw these patients; set data.holdout_fraction "
             "to test on patients it never saw)")
          + ". A generated image counts "
          "as right when the classifier gives the level and pattern it was asked for.", "",
          "| condition | held-out real | " + " | ".join(labels) + " | "
          + " | ".join(f"{l} Frechet / kernel" for l in labels) + " |",
          "|" + "---|" * (2 + 2 * len(labels))]
  ho = r["classifier"]["holdout_accuracy"]
  for key in r["counts"]:
    cells = [_f(r["runs_scores"][l]["accuracy"]["per_condition"].get(key), 2) for l in labels]
    for l in labels:
      pc = r["runs_scores"][l]["per_condition"].get(key)
      cells.append(f"{_f(pc['frechet'], 2)} / {_f(pc['kernel'], 3)}" if pc else "-")
    out.append(f"| {key} | {_f(ho['per_condition'].get(key), 2)} | " + " | ".join(cells) + " |")
  out.append(f"| **all** | **{_f(ho['overall'], 3)}** | "
             + " | ".join(f"**{_f(r['runs_scores'][l]['accuracy']['overall'], 3)}**" for l in labels)
             + " | " + " | ".join(f"{_f(r['runs_scores'][l]['summary']['frechet_mean'], 2)} / "
                                  f"{_f(r['runs_scores'][l]['summary']['kernel_mean'], 3)} (mean)"
                                  for l in labels) + " |")
  tw = r["classifier"].get("trained_with")
  if tw:
    out += ["", f"The classifier was trained on {tw['jax_backend']} with XLA_FLAGS="
            f"`{tw.get('xla_flags') or '(none)'}` on {tw.get('cpus_usable', '?')} usable CPU(s): on a "
            "CPU the thread setting changes how XLA sums, so a classifier trained under another "
            "setting gives figures a little different (docs/evaluation.md)."]
  out += ["", f"Side of unilateral defects on held-out real slices: classifier accuracy "
          f"{_f(ho.get('side'), 3)}.", ""]
  for l in labels:
    c = r["runs_scores"][l].get("side_correctness")
    if c:
      out += [f"Side-conditioned run **{l}** (data.condition_side): the classifier reads {_f(c['share'], 3)} "
              f"of its {c['n']} unilateral defects on the side asked for (asked left {_f(c['left'], 3)}, "
              f"right {_f(c['right'], 3)}; per level "
              + ", ".join(f"{k} {_f(v, 3)}" for k, v in c["per_level"].items())
              + f"), against {_f(ho.get('side'), 3)} on held-out real slices.", ""]
  out += side_balance_md(r["runs_scores"], labels)
  if r["augmentation"]:
    first = next(iter(r["augmentation"].values()))["real only"]
    seeds = first.get("seeds", [0])
    out += ["", "## Data augmentation: accuracy on held-out real subjects", "",
            f"Each classifier trained for {first['steps']} steps with {len(seeds)} seed(s) "
            f"({', '.join(map(str, seeds))}; the subject split stays): mean +/- SD over the seeds, then each seed's overall accuracy.", "",
            "| run | trained on | overall | pattern | level | side | overall per seed |",
            "|---|---|---|---|---|---|---|"]
    for l, s in r["augmentation"].items():
      for name, a in s.items():
        sd = a.get("sd", {})
        cells = [f"{_f(a[k])} +/- {_f(sd.get(k))}" if sd.get(k) is not None else _f(a[k])
                 for k in ("overall", "pattern", "level", "side")]
        per_seed = ", ".join(_f(x["overall"]) for x in a.get("repeats", [a]))
        out.append(f"| {l} | {name} | " + " | ".join(cells) + f" | {per_seed} |")
  for label, u in r.get("utility", {}).items():
    out += utility.markdown(label, u)
  out += _memorisation_md(r)
  out += ["", "## Images (Fig. 4)", "", "![Fig. 4](fig4_images.png)", "",
          f"Evaluation took {r.get('seconds', 'n/a')} s.", ""]
  return "\n".join(out)


def side_balance_md(runs_scores: dict, labels: list[str]) -> list[str]:
  """The left/right balance table of each run, and where sampling mirrored unilateral
  images, the generator's own left share."""
  out = ["### Left/right balance of unilateral defects", "",
         "| run | level | n | real left share (labels) | real left share (LR < 1) | "
         "generated left share (classifier) | generated left share (LR < 1) | binomial P |",
         "|---|---|---|---|---|---|---|---|"]
  for l in labels:
    for level, b in runs_scores[l]["side_balance"].items():
      out.append(f"| {l} | {level} | {b['n_fake']} | {_f(b['real_left_share'], 2)} | "
                 f"{_f(b['real_left_share_by_lr'], 2)} | {_f(b['fake_left_share_by_classifier'], 2)} | "
                 f"{_f(b['fake_left_share_by_lr'], 2)} | {_p(b['binomial_p'])} |")
  own = [(l, level, b) for l in labels for level, b in runs_scores[l]["side_balance"].items()
         if "generator_left_share_by_lr" in b]
  if own:
    out += ["", "Sampling mirrored a fair coin's share of these unilateral images (augment.flip_unilateral "
            "with sample.symmetric_flip), so the balance above is the coin's. The generator's own left "
            "share, by LR < 1 on the images flipped back, against the real share by LR:", "",
            "| run | level | mirrored | generator's own left share (LR < 1) | binomial P |", "|---|---|---|---|---|"]
    out += [f"| {l} | {level} | {_f(b['mirrored_share'], 2)} | {_f(b['generator_left_share_by_lr'], 2)} | "
            f"{_p(b['generator_binomial_p_by_lr'])} |" for l, level, b in own]
  return out


def _criteria_md(r: dict, labels: list[str]) -> list[str]:
  if not r.get("criteria"):
    return []
  out = ["## Fidelity criteria (docs/fidelity.md)", ""]
  if len(labels) > 1:
    out += ["A side-by-side report: MC and LR are the ANOVA over real and every run, not one run "
            "alone.", ""]
  for l in labels:
    rows = r["criteria"][l]
    met = sum(c["met"] is True for c in rows)
    out.append(f"**{l}**: {met} of {len(rows)} met.")
    out += [""] + [f"- {'met' if c['met'] else 'n/a' if c['met'] is None else '**missed**'}: "
                   f"{criteria.describe(c)}" for c in rows] + [""]
  return out


def _memorisation_md(r: dict) -> list[str]:
  if not r.get("memorisation"):
    return []
  first = next(iter(r["memorisation"].values()))["settings"]
  q = first["quantile"]
  out = ["", "## Memorisation audit: new images or copies of training patients?", "",
         "For every generated image, the distance to its nearest training slice of the same "
         "condition (centre slices and the slices above and below them), against the same distance "
         + ("from each real subject's slice to the other subjects' slices (leave-one-subject-out: a "
            "patient the run has not seen)"
            if first.get("new_patients", "leave-one-subject-out") == "leave-one-subject-out" else
            "from the slices of the held-out subjects, patients the run never trained on")
         + ". Pixel: RMS difference of max-normalised slices smoothed "
         f"by a Gaussian of {first.get('smooth_px', 0):g} px, minimised "
         f"over shifts of +/-{first['max_shift']} rows" + ((" and, for normal, bilateral and unilateral "
         "slices, a left-right flip" if first.get("flip_unilateral") else " and, for normal and "
         "bilateral slices, a left-right flip") if first["flip"] else "") + " (the run's augmentation); feature: the "
         f"condition classifier's features. Near-copy: closer than the {q:.0%} quantile of the "
         f"new-patient distances (expected share {q:.0%}; P: one-sided binomial). Z_U: Mann-Whitney "
         "z of generated against new-patient distances; C_T, their average weighted by the "
         "conditions' shares (Meehan et al. 2020): near 0 = as far as new patients, strongly "
         "negative (< -3) = copying. See docs/memorisation.md.", ""]
  for label, m in r["memorisation"].items():
    out += [f"**{label}**: near-copies " + ", ".join(
        f"{s} {_f(m['near_copy_share'][s] * 100, 1)} %" for s in m["near_copy_share"])
            + (f" (both {m['near_copies_both']})" if m.get("near_copies_both") is not None else "")
            + "; C_T " + ", ".join(f"{s} {_f(v, 2)}" for s, v in m["c_t"].items())
            + f"; {m.get('seconds', 'n/a')} s.", "",
            "| condition | distance | generated median (1st / 5th pct) | new patients median (1st / 5th pct) "
            "| threshold | near-copies | P | Z_U |", "|---|---|---|---|---|---|---|---|"]
    for space, per in m["per_condition"].items():
      for key, c in per.items():
        g, n = c["generated"], c["new_patients"]
        out.append(f"| {key} | {space} | {_f(g['median'], 4)} ({_f(g['p1'], 4)} / {_f(g['p5'], 4)}) | "
                   f"{_f(n['median'], 4)} ({_f(n['p1'], 4)} / {_f(n['p5'], 4)}) | {_f(c['threshold'], 4)} | "
                   f"{c['near_copies']} / {g['n']} ({_f(c['near_copy_share'] * 100, 1)} %) | "
                   f"{_p(c['binomial_p'])} | {_f(c['z_u'], 2)} |")
    if m.get("figure"):
      out += ["", f"The {len(m['closest'])} generated images nearest to a training slice (relative to "
              "their condition's threshold), each beside that slice:", "",
              f"![memorisation, {label}]({m['figure']})"]
    out.append("")
  return out
