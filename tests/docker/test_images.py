"""docker/Dockerfile*: no Docker engine here, so prove the install step instead. Each image's
`pip install` line is read from its Dockerfile and resolved by pip's dry run for that image's
Python and glibc, with the project's constraints: if this passes, the step can succeed."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import ROOT

# What each base image ships, from its publisher: NGC Triton 25.01 release notes (Ubuntu 24.04,
# Python 3.12.3, glibc 2.39); the python:3.12-slim-bookworm image (Debian 12, glibc 2.36).
BASES = {
    "nvcr.io/nvidia/tritonserver:25.01-py3": {"python": "3.12", "glibc": (2, 39)},
    "python:3.12-slim-bookworm": {"python": "3.12", "glibc": (2, 36)},
}
IMAGES = ["Dockerfile", "Dockerfile.gateway"]


def parse_dockerfile(path: Path) -> dict:
    """Base image, Python label and the `pip install` arguments, with ARG defaults substituted."""
    args, base, python, pip = {}, None, None, None
    text = re.sub(r"\\\n", " ", path.read_text())
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"ARG (\w+)=(\S+)", line):
            args[m[1]] = m[2]
        line = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), line)
        if line.startswith("FROM ") and base is None:
            base = line.split()[1]
        if m := re.search(r'io\.rmbg\.python="([\d.]+)"', line):
            python = m[1]
        if line.startswith("RUN pip install "):
            pip = shlex.split(line.removeprefix("RUN pip install "))
    assert base and python and pip, f"{path}: FROM, LABEL io.rmbg.python and RUN pip install are all needed"
    return {"base": base, "python": python, "pip": pip}


def requirements(pip_args: list[str]) -> tuple[list[str], list[str]]:
    """The project's requirements for the extras named in ``.[a,b]`` plus the other arguments."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs, extras = list(project["dependencies"]), []
    it = iter(pip_args)
    for arg in it:
        if arg == "-c":
            assert next(it) == "constraints.txt"
        elif m := re.fullmatch(r"\.\[([\w,-]+)\]", arg):
            extras = m[1].split(",")
            for extra in extras:
                assert extra in project["optional-dependencies"], f"pyproject.toml has no extra {extra!r}"
                reqs += project["optional-dependencies"][extra]
        else:
            reqs.append(arg)
    return reqs, extras


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_dockerfile_base_python_is_admitted_by_the_project(dockerfile):
    image = parse_dockerfile(ROOT / "docker" / dockerfile)
    assert image["base"] in BASES, f"unknown base {image['base']}: add its Python and glibc to BASES"
    assert image["python"] == BASES[image["base"]]["python"], "the io.rmbg.python label disagrees with the base"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires).contains(image["python"] + ".0"), f"requires-python {requires} excludes the image"


def test_triton_image_pins_the_tensorrt_of_its_base():
    image = parse_dockerfile(ROOT / "docker" / "Dockerfile")
    assert image["base"] == "nvcr.io/nvidia/tritonserver:25.01-py3"
    assert "tensorrt-cu12-bindings==10.8.0.43" in image["pip"]  # TensorRT of NGC 25.01 (release notes)
    assert not any(re.fullmatch(r"tensorrt([-\w]*)?", a) for a in image["pip"]), "an unpinned TensorRT"


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", IMAGES)
def test_image_requirements_resolve_for_the_image_python(dockerfile, tmp_path):
    image = parse_dockerfile(ROOT / "docker" / dockerfile)
    base = BASES[image["base"]]
    reqs, _ = requirements(image["pip"])
    (tmp_path / "requirements.txt").write_text("\n".join(r.split("#")[0].strip() for r in reqs) + "\n")
    major, minor = base["glibc"]
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(minor, 4, -1)] + ["manylinux2014_x86_64", "linux_x86_64"]
    abi = "cp" + image["python"].replace(".", "")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
           "--python-version", image["python"], "--implementation", "cp", "--abi", abi,
           *[a for p in platforms for a in ("--platform", p)],
           "--target", str(tmp_path / "site"), "--report", str(tmp_path / "report.json"), "--quiet",
           "-r", str(tmp_path / "requirements.txt"), "-c", str(ROOT / "constraints.txt")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{dockerfile}: pip cannot resolve the image's install step:\n{out.stderr[-4000:]}"
    installed = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                 for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    pins = dict(line.strip().lower().replace("_", "-").split("==") for line in
                (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert installed["numpy"] == pins["numpy"] and installed["numpy"].startswith("1.")  # the stub needs numpy < 2
    off_pin = {n: v for n, v in installed.items() if n in pins and pins[n] != v}
    assert not off_pin, f"constraints not applied: {off_pin}"
    if dockerfile == "Dockerfile":
        assert installed["tensorrt-cu12-bindings"] == "10.8.0.43" and "torch" in installed
    else:
        assert "torch" not in installed and "onnxruntime" not in installed  # the gateway carries no engine
