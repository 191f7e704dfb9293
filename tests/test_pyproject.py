"""The package metadata builds without setuptools' deprecation banners and carries the README as written."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import ROOT


def test_licence_is_an_spdx_expression_and_metadata_builds_quietly(tmp_path):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in pyproject["build-system"]["requires"]  # the first to read an SPDX string
    # The same hook pip calls for `pip install -e .`, with this environment's setuptools (no download).
    proc = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                           "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "project.license" not in proc.stderr and "License classifiers" not in proc.stderr, proc.stderr
    metadata = (tmp_path / proc.stdout.split()[-1] / "METADATA").read_text()
    assert "License-Expression: Apache-2.0" in metadata
    assert (ROOT / "README.md").read_text().strip() in metadata  # the long description is the README itself
