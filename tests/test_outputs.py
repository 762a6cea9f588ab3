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



def test_a_full_disk_or_denied_write_is_a_user_error_naming_the_file(tmp_path, monkeypatch):
  import errno
  from spect_fastgan_jax import errors
  (tmp_path / "a.json").write_bytes(b"old")

  def full(*args):
    raise OSError(errno.ENOSPC, "No space left on device")
  monkeypatch.setattr(outputs.os, "replace", full)
  with pytest.raises(errors.OutputError, match=r"a\.json.*No space left"):
    outputs.atomic_write(str(tmp_path / "a.json"), lambda f: f.write(b"new"))
  assert (tmp_path / "a.json").read_bytes() == b"old"
  assert sorted(os.listdir(tmp_path)) == ["a.json"]  # no temporary file left behind
  with pytest.raises(errors.OutputError, match="samples"):
    with outputs.new_folder(str(tmp_path / "samples"), overwrite=False):
      pass
  assert sorted(os.listdir(tmp_path)) == ["a.json"]

  def broken(*args):  # not the user's to fix: passes as it is, with its traceback
    raise OSError(errno.EIO, "I/O error")
  monkeypatch.setattr(outputs.os, "replace", broken)
  with pytest.raises(OSError) as e:
    outputs.atomic_write(str(tmp_path / "a.json"), lambda f: f.write(b"new"))
  assert not isinstance(e.value, errors.UserError)
