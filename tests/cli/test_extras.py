"""A subcommand whose extra is missing names the extra to install, before doing any work."""

from __future__ import annotations

import sys

import pytest

from rmbg_cli.main import main


@pytest.mark.parametrize(("argv", "blocked", "extra"), [
    (["build-repo", "--model", "isnet", "--weights", "synthetic"], "onnxruntime", "export"),
    (["export", "--model", "isnet-tiny", "--weights", "synthetic", "-o", "x.onnx"], "torch", "export"),
])
def test_missing_extra_is_named(monkeypatch, capsys, tmp_path, argv, blocked, extra):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, blocked, None)  # import now raises ImportError, as when not installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"pip install 'rmbg-triton[{extra}]'" in err and blocked in err
    assert not list(tmp_path.iterdir())  # nothing was written
