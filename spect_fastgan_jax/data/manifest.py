"""Users' own scans: a CSV manifest -> SliceDataset, reading volumes in parallel with grain.

Manifest: one row per selected slice, columns `path,slice,level,pattern[,side][,subject][,series]`
(a header row with these names is optional; with a header the columns may come in
any order, each once). `path` is relative to the manifest's folder or absolute; `slice`
indexes the craniocaudal axis after reorientation (0 = most inferior); an empty
`side` means none; an empty `subject` means the volume's path, so that all slices
of one scan count as one subject; `series` picks one DICOM series (its
SeriesInstanceUID or SeriesNumber) of a folder that holds several. Blank lines and
lines starting with '#' are skipped.

A data set written by `--mode=augment` adds the columns `source` (real or synthetic) and,
for synthetic rows, `epoch`, `seed` and `index` (what reproduces the image); they are
checked (a known source, whole numbers) and otherwise only recorded: every row trains
alike.

Every slice may appear once: a row that repeats another's file and slice, or whose
image is identical to another row's (a renamed copy, perhaps under another
subject), is refused naming both rows, so that no image is in two classes or on
both sides of a subject split.

Every bad input raises DataError naming the manifest, the row and the file.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import os
from typing import Callable

import numpy as np

from spect_fastgan_jax import conditions
from spect_fastgan_jax.data import volumes
from spect_fastgan_jax.data.dataset import DataError, SliceDataset, missing_reason

COLUMNS = ("path", "slice", "level", "pattern", "side", "subject", "series",
           "source", "epoch", "seed", "index")
REQUIRED = COLUMNS[:4]
SOURCES = ("real", "synthetic")
# Columns that record where a row came from (--mode=augment); whole numbers where given.
_WHOLE_COLUMNS = ("epoch", "seed", "index")


@dataclasses.dataclass(frozen=True)
class Row:
  number: int      # 1-based data row (header and comments not counted)
  line: int        # line in the file
  path: str        # as written in the manifest
  resolved: str    # absolute path
  slice: int
  level: str
  pattern: str
  side: str
  subject: str
  series: str      # a DICOM series of a folder of several; "" for none

  def where(self, manifest: str) -> str:
    return f"{manifest}: row {self.number} (line {self.line}, file {self.path})"

  def named(self) -> str:
    """The row as the user finds it in the file, with its labels."""
    return (f"row {self.number} (line {self.line}: {self.path} slice {self.slice}, {self.level} "
            f"{self.pattern}{'' if self.side == 'none' else ' ' + self.side}, subject {self.subject})")


def _label(value: str, known: tuple[str, ...], name: str, where: str) -> str:
  for k in known:
    if value.strip().lower() == k.lower():
      return k
  raise DataError(f"{where}: unknown {name} label {value!r}; known: {', '.join(known)}")


def _read_text(manifest: str) -> str:
  """The manifest's text (UTF-8, with or without a byte-order mark); DataError naming
  the manifest and why it cannot be read (a folder, a link loop, a line that is not UTF-8)."""
  if os.path.isdir(manifest):
    raise DataError(f"{manifest}: is a folder, not a manifest file (give the CSV file itself)")
  if not os.path.isfile(manifest):
    raise DataError(f"{manifest}: {missing_reason(manifest, 'no such manifest file')}")
  try:
    with open(manifest, "rb") as f:
      raw = f.read()
  except OSError as e:
    raise DataError(f"{manifest}: cannot read the manifest ({type(e).__name__}: {e})") from e
  if raw.startswith(codecs.BOM_UTF8):
    raw = raw[len(codecs.BOM_UTF8):]
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw.count(b"\n", 0, e.start) + 1
    column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
    raise DataError(f"{manifest}: line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                    f"column {column}); save the manifest as UTF-8") from e


def _check_header(header: list[str], manifest: str, line: int) -> None:
  """DataError naming a duplicated, unknown or missing column of a header row."""
  twice = [h for i, h in enumerate(header) if h in header[:i]]
  if twice:
    raise DataError(f"{manifest}: line {line}: column {twice[0]!r} appears "
                    f"{header.count(twice[0])} times in the header {header}; each column may "
                    "appear once")
  unknown = [h for h in header if h not in COLUMNS]
  missing = [c for c in REQUIRED if c not in header]
  if unknown or missing:
    raise DataError(f"{manifest}: line {line}: bad header {header}: "
                    + (f"unknown column(s) {unknown}; " if unknown else "")
                    + (f"missing column(s) {missing}; " if missing else "")
                    + f"columns are {','.join(COLUMNS)}")


def _check_repeats(rows: list[Row], manifest: str) -> None:
  """DataError naming two rows that select the same slice of the same file, or two rows
  that give one scan (file and series) two subjects: a slice's neighbours are another
  row's slices, so one scan under two subjects would sit on both sides of a split."""
  first: dict[tuple, Row] = {}
  for row in rows:
    a = first.setdefault((row.resolved, row.series, row.slice), row)
    if a is not row:
      labels = (row.level, row.pattern, row.side, row.subject)
      differ = labels != (a.level, a.pattern, a.side, a.subject)
      raise DataError(f"{manifest}: {row.named()} repeats {a.named()}: the same slice of the "
                      f"same file{', with other labels' if differ else ''}; each slice may "
                      "appear once")
  subject_of: dict[tuple, Row] = {}
  for row in rows:
    a = subject_of.setdefault((row.resolved, row.series), row)
    if a.subject != row.subject:
      raise DataError(f"{manifest}: {row.named()} and {a.named()} are slices of the same scan "
                      "under two subjects; one scan is one subject's (fix the subject column, or "
                      "write the path the same way in both rows)")


def read_rows(manifest: str) -> list[Row]:
  """Parses and checks the manifest's text (labels, slice numbers, repeated rows);
  reads no volume."""
  reader = csv.reader(io.StringIO(_read_text(manifest), newline=""))
  try:
    lines = list(enumerate(reader, start=1))
  except csv.Error as e:
    raise DataError(f"{manifest}: line {reader.line_num}: cannot read the manifest "
                    f"(csv.Error: {e})") from e
  lines = [(n, [c.strip() for c in cells]) for n, cells in lines
           if any(c.strip() for c in cells) and not cells[0].lstrip().startswith("#")]
  columns = list(COLUMNS)
  if lines and lines[0][1][0].lower() == "path":
    n, header = lines.pop(0)
    header = [h.lower() for h in header]
    _check_header(header, manifest, n)
    columns = header
  if not lines:
    raise DataError(f"{manifest}: the manifest is empty (no slice rows); expected rows "
                    f"{','.join(COLUMNS[:4])}[,side][,subject][,series]")
  base = os.path.dirname(os.path.abspath(manifest))
  rows = []
  for number, (line, cells) in enumerate(lines, start=1):
    where = f"{manifest}: row {number} (line {line}" + (f", file {cells[0]})" if cells[0] else ")")
    if len(cells) > len(columns) or len(cells) < len(REQUIRED):
      raise DataError(f"{where}: {len(cells)} fields; expected {len(REQUIRED)} to {len(columns)} "
                      f"({','.join(columns)})")
    field = dict(zip(columns, cells))
    path = field["path"]
    if not path:
      raise DataError(f"{where}: empty path")
    where = f"{manifest}: row {number} (line {line}, file {path})"
    try:
      index = int(field["slice"])
    except ValueError:
      raise DataError(f"{where}: slice {field['slice']!r} is not an integer") from None
    level = _label(field["level"], conditions.LEVELS, "level", where)
    pattern = _label(field["pattern"], conditions.PATTERNS, "pattern", where)
    side = _label(field.get("side") or "none", conditions.SIDES, "side", where)
    if side != "none" and pattern != "unilateral":
      raise DataError(f"{where}: side {side!r} given for a {pattern} slice; only unilateral "
                      "slices have a defect side (leave it empty or 'none')")
    if field.get("source"):
      _label(field["source"], SOURCES, "source", where)
    for name in _WHOLE_COLUMNS:
      if field.get(name) and not field[name].isdigit():
        raise DataError(f"{where}: {name} {field[name]!r} is not a whole number")
    resolved = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    rows.append(Row(number, line, path, resolved, index, level, pattern, side,
                    field.get("subject") or path, field.get("series") or ""))
  _check_repeats(rows, manifest)
  return rows


@dataclasses.dataclass(frozen=True)
class _Read:
  """What reading one volume gave its rows: slices per row number, or the error."""
  slices: dict
  messages: tuple
  error: DataError | None = None
  error_row: int = 0


def _read_rows_of_volume(item: tuple[tuple[str, str], tuple[Row, ...]], resample: bool,
                         manifest: str) -> _Read:
  """Reads one volume and cuts every row's three slices out of it (runs in grain's
  reader threads; returns errors instead of raising them, so that the first bad row
  of the manifest is reported, whatever thread finished first)."""
  (resolved, series), rows = item
  first = rows[0]
  try:
    volume = volumes.read_volume(resolved, series)
  except DataError as e:
    return _Read({}, (), DataError(f"{first.where(manifest)}: {_strip(str(e), resolved)}"), first.number)
  out, messages = {}, []
  for row in rows:
    try:
      raw, pixel = volumes.neighbour_slices(volume, row.slice, row.path)
      bad = ~np.isfinite(raw)
      if bad.any():
        k = row.slice - 1 + int(np.flatnonzero(bad.reshape(3, -1).any(axis=1))[0])
        raise DataError(f"slice {k} holds NaN or Inf values")
      if (raw < 0).any():
        k = row.slice - 1 + int(np.flatnonzero((raw < 0).reshape(3, -1).any(axis=1))[0])
        raise DataError(f"slice {k} holds negative counts (min {raw.min():.4g}); "
                        "counts must be >= 0")
      empty = raw.reshape(3, -1).max(axis=1) <= 0
      if empty.any():
        raise DataError(f"slice {row.slice - 1 + int(np.flatnonzero(empty)[0])} is all zero")
      img, message = volumes.to_matrix(raw, pixel, resample, row.path)
    except DataError as e:
      return _Read(out, tuple(messages),
                   DataError(f"{row.where(manifest)}: {_strip(str(e), row.path)}"), row.number)
    if message and not messages:
      messages.append(message)
    out[row.number] = img
  return _Read(out, tuple(messages))


def _strip(message: str, path: str) -> str:
  # The row prefix already names the file; drop the reader's own "path: " prefix.
  for p in (path, os.path.abspath(path)):
    if message.startswith(p + ": "):
      return message[len(p) + 2:]
  return message


def _check_same_images(rows: list[Row], slices: dict, manifest: str) -> None:
  """DataError naming two rows whose selected slices hold the same image (a hash of
  the slice data as read), whatever their files are called: one image in two
  classes, or under two subjects, would leak across any subject split."""
  first: dict[bytes, Row] = {}
  for row in rows:
    a = first.setdefault(hashlib.sha256(slices[row.number][1].tobytes()).digest(), row)
    if a is not row:
      raise DataError(f"{manifest}: {row.named()} holds the same image as {a.named()} "
                      "(identical slice data"
                      + (", under two subjects" if row.subject != a.subject else "")
                      + "); each slice may appear once: remove one of the rows")


def load_manifest(manifest: str, resample_inplane: bool = True, read_workers: int = 4,
                  log: Callable[[str], None] = print) -> SliceDataset:
  """Reads every slice a manifest names.

  Args:
    manifest: path of the CSV file.
    resample_inplane: resample volumes whose matrix is not 64 x 64 (else refuse them).
    read_workers: grain reader threads (volumes read in parallel).
    log: where resampling notes go.

  Returns:
    SliceDataset, rows in manifest order; slices float32 [N, 3, 64, 64].
  """
  import grain

  rows = read_rows(manifest)
  by_volume: dict[tuple[str, str], list[Row]] = {}
  for row in rows:
    by_volume.setdefault((row.resolved, row.series), []).append(row)
  items = [(path, tuple(rs)) for path, rs in by_volume.items()]
  reader = (grain.MapDataset.source(items)
            .map(lambda item: _read_rows_of_volume(item, resample_inplane, manifest))
            .to_iter_dataset(grain.ReadOptions(num_threads=max(int(read_workers), 0),
                                               prefetch_buffer_size=max(2 * int(read_workers), 1))))
  results = list(reader)
  errors = [r for r in results if r.error is not None]
  if errors:
    raise min(errors, key=lambda r: r.error_row).error
  slices = {}
  for r in results:
    for message in r.messages:
      log(message)
    slices.update(r.slices)
  _check_same_images(rows, slices, manifest)
  return SliceDataset(
      slices=np.stack([slices[row.number] for row in rows]),
      level=np.array([row.level for row in rows]),
      pattern=np.array([row.pattern for row in rows]),
      side=np.array([row.side for row in rows]),
      subject=np.array([row.subject for row in rows])).validate(manifest)
