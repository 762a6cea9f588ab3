"""Per-epoch logs of a run: JSON lines, TensorBoard event files, sample grids.

TensorBoard files are written with tensorboardX, which does not import TensorFlow.
"""

from __future__ import annotations

import json
import os

import numpy as np


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
