"""The model card of a run's epoch: card.json and card.md.

What a reader needs to decide, from the card alone, whether to use the run's images:
what the run was trained on (source, slices per condition, subjects, held-out
subjects), the recipe (the config and its hash), the epoch and why `select` chose it,
the fidelity criteria at that epoch (pass or fail, with their numbers), the
memorisation audit, the utility study where the run has one, how the side of a
synthetic unilateral defect is known, and the intended use and known limits.

Everything comes from records already written: the run's config.json and
subjects.json, the newest select.json, and the report.json of `--mode=evaluate`
(evaluation/report.py). Nothing is recomputed, so a card never disagrees with the
report it cites. `--mode=evaluate` writes one beside report.md; `--mode=augment`
writes one, with a section on the data set it made, into its output.
"""

from __future__ import annotations

import glob
import os

from spect_fastgan_jax import conditions, outputs, provenance
from spect_fastgan_jax import workdir as workdir_lib
from spect_fastgan_jax.errors import RunError
from spect_fastgan_jax.evaluation import criteria, utility

CARD_VERSION = 1

INTENDED_USE = (
    "Research: balancing a small, skewed set of 2D perfusion SPECT slices, or adding "
    "slices for a network that needs more, by the conditions the run was trained on "
    "(anatomical level; normal, unilateral or bilateral defect).",
    "Methods work on data augmentation, generative models and memorisation audits.",
)
LIMITS = (
    "Not validated clinically: no reader study, no diagnostic use, no use on patients.",
    "2D slices only: one 64 x 64 axial slice per image at the run's levels; no 3D volume, "
    "no slices between the levels.",
    "The images are as good as the criteria below say, on the metrics of docs/evaluation.md; "
    "a P > 0.05 is absence of evidence of a difference, not proof of none.",
    "The condition classifier behind accuracy, side and feature distances is small and "
    "trained on the same real data; its held-out accuracy bounds what it can confirm.",
)
_SIMULATED_LIMIT = ("Trained on the simulated default data set (docs/data.md), not on patients: "
                    "the images show what the simulator draws, not what a camera shows.")
# Config fields a reader of the card is shown; the whole config is in the run's config.json.
_RECIPE_FIELDS = (
    "num_epochs", "batch_size", "seed", "data.levels", "data.condition_side", "data.condition_balance",
    "data.holdout_fraction", "model.g_channels", "model.d_channels", "model.z_dim", "model.g_cond",
    "model.d_cond", "optim.lr_g", "optim.lr_d", "optim.b1", "optim.ema_decay",
    "loss.mode_seeking", "loss.condition_aux", "augment.blend_prob", "augment.blend_mc_excess",
    "augment.max_shift",
    "augment.flip_unilateral", "augment.diff_shift", "sample.symmetric_flip")


def find_report(workdir: str, epoch: int) -> str | None:
  """The newest report.json of a single-run --mode=evaluate of `epoch` in the run in
  `workdir` (<workdir>/evaluation/epoch_XXXX_seedS/), or None."""
  pattern = os.path.join(workdir_lib.evaluation_dir(workdir), f"epoch_{int(epoch):04d}_seed*",
                         "report.json")
  found = [p for p in glob.glob(pattern)
           if "_vs_" not in os.path.basename(os.path.dirname(p))]
  return max(found, key=os.path.getmtime) if found else None


def _field(config: dict, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def _source(data: dict) -> dict:
  if data.get("npz"):
    return {"kind": "npz", "where": data["npz"]}
  if data.get("manifest"):
    return {"kind": "manifest", "where": data["manifest"]}
  return {"kind": "simulated", "where": "the simulated default data set (docs/data.md)",
          "simulation": data.get("simulation")}


def _epoch_choice(epoch: int, selection: tuple[str, dict] | None) -> dict:
  if selection is None:
    return {"epoch": epoch, "chosen_by": "no --mode=select output in the run",
            "reason": None, "select_file": None}
  path, record = selection
  best = record.get("best_epoch")
  if best == epoch:
    return {"epoch": epoch, "chosen_by": "--mode=select", "reason": record.get("reason"),
            "select_file": os.path.abspath(path)}
  return {"epoch": epoch, "chosen_by": f"given (--mode=select named epoch {best})",
          "reason": record.get("reason"), "select_file": os.path.abspath(path)}


def _utility(report: dict, label: str) -> dict | None:
  u = report.get("utility", {}).get(label)
  if u:
    if "skipped" in u:
      return {"kind": "utility study", "skipped": u["skipped"]}
    arms = {a: {"balanced": v["balanced"], "overall": v["overall"]} for a, v in u["arms"].items()}
    return {"kind": "utility study", "test": "held-out subjects neither the GAN nor a classifier saw",
            "arms": arms, "best_without_gan": u["best_without_gan"],
            "synthetic_draw": utility.draw_text(u.get("synthetic_share", 0.0)),
            "paired_vs_best_without_gan": {a: {"balanced": d["balanced"], "overall": d["overall"]}
                                           for a, d in u["paired_vs_best_without_gan"].items()}}
  a = report.get("augmentation", {}).get(label)
  if a:
    return {"kind": "augmentation study",
            "test": "subjects held out of the classifier but seen by the GAN: the figures can leak",
            "arms": {arm: {"overall": v["overall"], "sd": v.get("sd", {}).get("overall")}
                     for arm, v in a.items()}}
  return None


def build(workdir: str, epoch: int, report: dict | None = None, report_path: str | None = None,
          label: str | None = None) -> dict:
  """The card of `epoch` of the run in `workdir`, from its records and, when given, the
  report.json dict `report` (at `report_path`) of an evaluation of that epoch; `label`:
  the run's label in the report (default its first run). Without a report the card
  says that the epoch was not evaluated."""
  record = workdir_lib.read_run_record(workdir)
  if record is None or not isinstance(record.get("config"), dict):
    raise RunError(f"{os.path.join(workdir, 'config.json')} holds no run config: no card can be written")
  config = record["config"]
  data = config.get("data", {})
  levels = conditions.check_levels(data.get("levels", conditions.LEVELS))
  side_conditioned = bool(data.get("condition_side", False))
  subjects = workdir_lib.read_subjects(workdir)
  card = {
      "card_version": CARD_VERSION,
      "run": {"workdir": os.path.abspath(workdir), "epoch": int(epoch), "levels": list(levels),
              "condition_vector": list(conditions.condition_names(levels, side_conditioned)),
              "side_conditioning": side_conditioned},
      "training_data": {
          **_source(data), "counts": record.get("data_counts"),
          "subjects": None if subjects is None else {k: len(v) for k, v in subjects.items()},
          "holdout_fraction": data.get("holdout_fraction", 0.0),
          "limit_subjects": data.get("limit_subjects", "")},
      "recipe": {"config_file": os.path.abspath(os.path.join(workdir, "config.json")),
                 "config_hash": workdir_lib.config_hash(config),
                 # Settings training derived from the data (augment.blend_mc_excess,
                 # augment.flip_unilateral "auto") as run.
                 "settings": {**{f: _field(config, f) for f in _RECIPE_FIELDS if _field(config, f) is not None},
                              **(record.get("derived") or {})}},
      "epoch": _epoch_choice(int(epoch), workdir_lib.newest_selection(workdir)),
      "evaluation": None, "fidelity": None, "memorisation": None, "utility": None,
      "side": {"conditioned": side_conditioned},
      "intended_use": list(INTENDED_USE),
      "limits": ([_SIMULATED_LIMIT] if _source(data)["kind"] == "simulated" else []) + list(LIMITS),
      "provenance": provenance.describe(),
  }
  if report is None:
    return card
  label = label or report["runs"][0]["label"]
  run = next((r for r in report["runs"] if r["label"] == label), None)
  if run is None or int(run["epoch"]) != int(epoch):
    raise RunError(f"{report_path or 'the report'} evaluates no run {label!r} at epoch {epoch}")
  rows = report.get("criteria", {}).get(label) or criteria.fidelity_criteria(report, label)
  ho = report["classifier"]["holdout_accuracy"]
  card["evaluation"] = {"report": os.path.abspath(report_path) if report_path else None,
                        "seed": report.get("seed"), "counts": report.get("counts"),
                        "side_by_side": len(report["runs"]) > 1,
                        "test_subjects_unseen_by_the_run":
                            report.get("test_subjects", {}).get("unseen_by_the_runs"),
                        "classifier_holdout_accuracy": {k: ho.get(k) for k in ("overall", "side")}}
  card["fidelity"] = {"met": sum(r["met"] is True for r in rows), "judged": sum(r["met"] is not None for r in rows),
                      "criteria": [{k: r[k] for k in ("name", "rule", "met", "values", "failing", "summary")}
                                   for r in rows],
                      "lines": [criteria.describe(r) for r in rows]}
  memo = report.get("memorisation", {}).get(label)
  if memo:
    card["memorisation"] = {"near_copy_share": memo["near_copy_share"], "c_t": memo["c_t"],
                            "expected_share": memo["settings"]["quantile"],
                            "new_patients": memo["settings"].get("new_patients")}
  card["utility"] = _utility(report, label)
  asked = report["runs_scores"][label].get("side_correctness")
  card["side"].update({"classifier_holdout_side_accuracy": ho.get("side"),
                       "correctness": {**asked, "real_holdout": ho.get("side")} if asked else None})
  return card


def with_data_set(card: dict, data_set: dict) -> dict:
  """`card` with the section of a data set `--mode=augment` made from the run: its
  counts, the near-copy filter's record and how each synthetic side is known."""
  out = dict(card)
  out["data_set"] = data_set
  if data_set.get("side"):
    out["side"] = {**card["side"], **data_set["side"]}
  return out


def write(card: dict, folder: str) -> None:
  """card.json and card.md into `folder`."""
  outputs.write_json(card, os.path.join(folder, "card.json"))
  with open(os.path.join(folder, "card.md"), "w") as f:
    f.write(markdown(card))


def _f(x, digits: int = 3) -> str:
  return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(x: dict | None) -> str:
  if not x:
    return "n/a"
  return _f(x["mean"]) + (f" ({_f(x['ci'][0])} to {_f(x['ci'][1])})" if x.get("ci") else "")


def markdown(card: dict) -> str:
  """card.md from a card dict (`build`, `with_data_set`)."""
  run, data, fid = card["run"], card["training_data"], card["fidelity"]
  out = [f"# Model card: `{os.path.basename(run['workdir'])}`, epoch {run['epoch']}", ""]
  if fid is None:
    out += ["**Not evaluated**: no `--mode=evaluate` report of this epoch, so its fidelity and "
            "memorisation are unknown. Run `python launch.py --mode=evaluate "
            f"--workdir={run['workdir']} --epoch={run['epoch']}` before using the images.", ""]
  else:
    memo = card["memorisation"]
    out += [f"**Fidelity criteria met: {fid['met']} of {fid['judged']}**"
            + (" (misses: " + ", ".join(r["name"] for r in fid["criteria"] if r["met"] is False) + ")"
               if fid["met"] < fid["judged"] else "")
            + (f". Near-copies of training slices: {memo['near_copy_share']['pixel']:.1%} (pixel; "
               f"{memo['expected_share']:.0%} expected), C_T {_f(memo['c_t'].get('pixel'), 2)}."
               if memo else ". Memorisation not audited."), ""]
  out += ["## Training data", "",
          f"- Source: {data['kind']}, {data['where']}.",
          "- Slices per condition: " + (", ".join(f"{k} {v}" for k, v in data["counts"].items())
                                        if data.get("counts") else "not recorded") + ".",
          "- Subjects: " + (f"{data['subjects']['train']} trained on, {data['subjects']['holdout']} held "
                            f"out of training (data.holdout_fraction {data['holdout_fraction']})"
                            if data.get("subjects") else "not recorded (a run written before subjects.json)")
          + (f"; data.limit_subjects {data['limit_subjects']}" if data.get("limit_subjects") else "") + ".",
          f"- Levels: {', '.join(run['levels'])}; condition vector "
          f"({', '.join(run['condition_vector'])})"
          + ("; unilateral split by side (data.condition_side)" if run["side_conditioning"] else "") + ".",
          "", "## Recipe", "",
          f"Config `{card['recipe']['config_file']}`, hash `{card['recipe']['config_hash']}`:", ""]
  out += [f"- {k}: {v}" for k, v in card["recipe"]["settings"].items()]
  ep = card["epoch"]
  out += ["", "## Epoch", "", f"Epoch {ep['epoch']}, chosen by: {ep['chosen_by']}"
          + (f". Select's rule: {ep['reason']} (`{ep['select_file']}`)." if ep.get("reason") else "."), ""]
  if fid is not None:
    ev = card["evaluation"]
    out += ["## Fidelity criteria (docs/fidelity.md)", "",
            f"From `{ev['report']}` (seed {ev['seed']}; as many images per condition as the real "
            "set)" + ("; a side-by-side report: MC and LR are the joint ANOVA over its runs" if ev["side_by_side"]
                      else "") + ".", ""]
    out += [f"- {'met' if r['met'] else 'n/a' if r['met'] is None else '**missed**'}: {line}"
            for r, line in zip(fid["criteria"], fid["lines"])]
    out.append("")
  memo = card["memorisation"]
  if memo:
    out += ["## Memorisation audit (docs/memorisation.md)", "",
            "Near-copies (closer to a training slice than the "
            f"{memo['expected_share']:.0%} quantile of new patients): "
            + ", ".join(f"{s} {v:.1%}" for s, v in memo["near_copy_share"].items())
            + f" ({memo['expected_share']:.0%} expected); C_T "
            + ", ".join(f"{s} {_f(v, 2)}" for s, v in memo["c_t"].items())
            + " (near 0: as far from the training slices as new patients; below -3: copying). "
            f"New patients: {memo['new_patients']}.", ""]
  u = card["utility"]
  if u:
    out += [f"## Utility ({u['kind']})", ""]
    if "skipped" in u:
      out += [f"Not run: {u['skipped']}", ""]
    elif u["kind"] == "utility study":
      out += [f"Classifiers tested on {u['test']}; synthetic slices {u['synthetic_draw']}. "
              "Balanced accuracy, mean (95 % interval):", ""]
      out += [f"- {a}: {_ci(v['balanced'])}" for a, v in u["arms"].items()]
      out += ["", f"Paired difference to the best arm without synthetic slices ({u['best_without_gan']}):", ""]
      out += [f"- {a}: {_ci(d['balanced'])}" for a, d in u["paired_vs_best_without_gan"].items()]
      out.append("")
    else:
      out += [f"Classifiers tested on {u['test']}; overall accuracy:", ""]
      out += [f"- {a}: {_f(v['overall'])}" + (f" +/- {_f(v['sd'])}" if v.get("sd") is not None else "")
              for a, v in u["arms"].items()]
      out.append("")
  out += _side_md(card["side"])
  ds = card.get("data_set")
  if ds:
    nf = ds.get("near_copy_filter")
    out += ["## This data set", "",
            f"Real training slices and synthetic slices of epoch {ds['epoch']} (seed {ds['seed']}), "
            f"{ds['rule']}:", "",
            "| condition | real | synthetic | total |", "|---|---|---|---|"]
    for k, c in ds["counts"].items():
      out.append(f"| {k} | {c['real']} | {c['synthetic']} | {c['real'] + c['synthetic']} |")
    out += ["", ("Near-copy filter: " + (f"dropped {len(nf['dropped'])} of {nf['drawn']} images drawn "
                                         "(info.json lists them)." if nf else "off (--noreject_near_copies)."))
            , "Each synthetic NIfTI holds its image three times (the slice and its two neighbours): "
            "the generator draws one slice, so a training blend with a neighbour leaves it as it is.", ""]
  out += ["## Intended use", ""] + [f"- {x}" for x in card["intended_use"]]
  out += ["", "## Known limits", ""] + [f"- {x}" for x in card["limits"]]
  prov = card["provenance"]
  out += ["", "## Provenance", "", f"Code {prov.get('git_commit')}, JAX backend {prov.get('jax_backend')}, "
          f"Python {prov.get('python')}; card version {card['card_version']}.", ""]
  return "\n".join(out)


def _side_md(side: dict) -> list[str]:
  out = ["## Side of unilateral defects", ""]
  if side.get("conditioned"):
    out.append("The run is side-conditioned (data.condition_side): a unilateral image is drawn "
               "with the side it is asked for.")
    c = side.get("correctness")
    if c:
      out.append(f"The classifier reads the asked side in {_f(c.get('share'))} of generated "
                 f"unilateral images (left {_f(c.get('left'))}, right {_f(c.get('right'))}; n = {c.get('n')}), "
                 f"against {_f(c.get('real_holdout'))} on held-out real slices.")
  else:
    out.append("The run is not side-conditioned: the generator is not told a side.")
  if side.get("read_by_classifier"):
    out.append("The side of each synthetic unilateral slice in this data set was **read by the "
               "condition classifier's side head**, not drawn as asked; that classifier reads the "
               f"side of held-out real slices right in {_f(side.get('classifier_holdout_side_accuracy'))} "
               "of cases, so about that share of the synthetic side labels are right.")
  elif side.get("classifier_holdout_side_accuracy") is not None:
    out.append("The condition classifier reads the side of held-out real unilateral slices right in "
               f"{_f(side['classifier_holdout_side_accuracy'])} of cases.")
  return out + [""]
