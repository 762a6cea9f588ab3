import os

import pytest

from spect_fastgan_jax import outputs


def _write(folder, text):
  with open(os.path.join(folder, "result.txt"), "w") as f:
    f.write(text)


def test_a_failure_inside_the_block_keeps_the_earlier_outputs(tmp_path):
  out = str(tmp_path / "report")
  with outputs.new_folder(out, overwrite=False) as tmp:
    _write(tmp, "first")
  with pytest.raises(RuntimeError):
    with outputs.new_folder(out, overwrite=True) as tmp:
      _write(tmp, "second")
      raise RuntimeError("disk full")
  assert open(os.path.join(out, "result.txt")).read() == "first"
  assert os.listdir(tmp_path) == ["report"]  # no temporary folder left behind


def test_existing_outputs_are_refused_without_overwrite_and_replaced_with_it(tmp_path):
  out = str(tmp_path / "report")
  with outputs.new_folder(out, overwrite=False) as tmp:
    _write(tmp, "first")
  with pytest.raises(FileExistsError, match="--overwrite"):
    with outputs.new_folder(out, overwrite=False) as tmp:
      _write(tmp, "second")
  with outputs.new_folder(out, overwrite=True) as tmp:
    _write(tmp, "second")
  assert open(os.path.join(out, "result.txt")).read() == "second"
  assert sorted(os.listdir(tmp_path)) == ["report"]
  assert oct(os.stat(out).st_mode & 0o777) == "0o755"
