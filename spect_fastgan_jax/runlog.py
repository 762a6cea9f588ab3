"""Per-epoch logs of a run: JSON lines, TensorBoard event files, sample grids.

TensorBoard files are written with tensorboardX, which does not import TensorFlow.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from spect_fastgan_jax.errors import check_field, is_whole


def to_stderr(msg: str) -> None:
  """The default `log` of training and of the modes: one line to stderr, flushed."""
  print(msg, file=sys.stderr, flush=True)


def check_config(log_config) -> None:
  """Raises ConfigError naming the first bad field of `config.log`."""
  for f in ("sample_every_epochs", "monitor_every_epochs"):
    check_field(is_whole(log_config[f]) and log_config[f] >= 0, f"log.{f}", log_config[f],
                "must be a whole number >= 0")
  v = log_config.monitor_per_condition
  check_field(is_whole(v) and v >= 2, "log.monitor_per_condition", v, "must be a whole number >= 2")
  for f in ("tensorboard", "progress"):
    check_field(isinstance(log_config[f], bool), f"log.{f}", log_config[f], "must be True or False")


class RunLog:
  def __init__(self, workdir: str, tensorboard: bool = True):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if tensorboard:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, epoch: int, metrics: dict) -> None:
    record = {"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in metrics.items():
        self._tb.add_scalar(f"train/{k}", float(v), epoch)

  def image(self, epoch: int, tag: str, grid: np.ndarray) -> None:
    """grid: [H, W] in [0, 1]."""
    if self._tb is not None:
      self._tb.add_image(tag, np.clip(grid, 0, 1)[None], epoch, dataformats="CHW")

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read(workdir: str) -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        # A run killed mid-append leaves a partial last line: that epoch has no
        # checkpoint either, and resuming drops it.
        continue
  return records


class Progress:
  """Epoch progress with an ETA on stderr (tqdm), or silent."""

  def __init__(self, config, first_epoch, metric_names, show: bool = True):
    """One bar over epochs first_epoch..config.num_epochs showing `metric_names` and
    the newest monitor scores; silent unless config.log.progress and `show`."""
    self._bar = None
    self.metric_names = tuple(metric_names)
    self._last_monitor = {}
    if config.log.progress and show:
      from tqdm import tqdm
      self._bar = tqdm(total=config.num_epochs, initial=first_epoch - 1, unit="epoch",
                       file=sys.stderr, dynamic_ncols=True)

  def update(self, epoch, metrics):
    if "monitor/diversity_min" in metrics:
      self._last_monitor = {"div": f"{metrics['monitor/diversity_min']:.2f}",
                            "acc": f"{metrics['monitor/accuracy']:.2f}",
                            "dx": f"{metrics['monitor/centroid_offset_px']:+.2f}"}
    if self._bar is not None:
      self._bar.set_postfix({**{k: f"{metrics[k]:.3f}" for k in self.metric_names},
                             **self._last_monitor})
      self._bar.update(1)

  def close(self):
    if self._bar is not None:
      self._bar.close()
