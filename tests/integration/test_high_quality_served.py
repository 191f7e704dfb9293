"""``highQuality`` through the real server: its mask is the library's, better than the default's,
and a failing second pass fails only its own request.

The pairs are the eval set's kinds where the default path is weak and where it is not: a
subject small in the frame (giraffe, cactus flowers), long hair, a subject that fills the
frame (no second pass: the crop would be the photo) and thin spokes. The whole set is measured
by `make eval` (perf/eval_quality.py), beside rembg; this keeps a served check in the suite.
"""

from __future__ import annotations

import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from rmbg_client import RmbgClient, ServerError
from tests.conftest import quality_figures

pytestmark = pytest.mark.triton
PAIRS = ("ecssd_0151", "ecssd_0033", "grabcut_181079", "ecssd_0074", "davis_bike_00000")
FULL_FRAME = "ecssd_0074"  # its subject box, grown by the margin, is the whole photo
MASK = {"returnOnlyMask": True}
HQ = {"returnOnlyMask": True, "highQuality": True}


def mask_of(result) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(result.data))).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def served(triton, pairs) -> dict[str, dict]:
    client = RmbgClient(triton.grpc_url)
    out = {}
    for p in (p for p in pairs if p.id in PAIRS):
        data = p.image.read_bytes()
        default, hq = client.remove(data, MASK), client.remove(data, HQ)
        out[p.id] = {"pair": p, "default": mask_of(default), "hq": mask_of(hq), "info": hq.info}
    assert set(out) == set(PAIRS)
    return out


def test_high_quality_mask_is_the_library_run_on_the_same_engine(served, model_repository):
    from rmbg_backend.decode import decode_image
    from rmbg_backend.engines import make_engine
    from rmbg_backend.families import family
    from rmbg_backend.high_quality import high_quality_alpha
    from rmbg_backend.resize import to_model_input

    engine = make_engine(str(model_repository / "isnet" / "1" / "model.xml"), "openvino", 2, "int8")
    spec = family("isnet").spec()
    for pid, s in served.items():
        rgb = decode_image(s["pair"].image.read_bytes()).rgb
        first = engine.run(to_model_input(rgb, spec)[np.newaxis])[0]
        direct, _ = high_quality_alpha(first, rgb, spec, engine.run)
        diff = np.abs(direct.astype(np.float32) / 255.0 - s["hq"]).mean()
        assert diff <= 1.0 / 255, (pid, diff * 255)


def test_high_quality_changes_the_mask_and_beats_the_default(served, record_property):
    figures = {pid: {k: quality_figures(s[k], s["pair"].mask) for k in ("default", "hq")} for pid, s in served.items()}
    record_property("high_quality", figures)
    for pid, s in served.items():
        # the decision alone changes every mask: most of the default's grey pixels become 0 or 1
        grey = (s["default"] > 0.1) & (s["default"] < 0.9)
        changed = np.abs(s["hq"] - s["default"]) > 0.1
        assert changed.sum() >= 0.5 * grey.sum() > 0, (pid, changed.sum(), grey.sum())
        assert ((s["hq"] > 0.1) & (s["hq"] < 0.9)).sum() < 0.5 * grey.sum(), pid  # no wide grey ramps left
        f, d = figures[pid]["hq"], figures[pid]["default"]
        assert f["mae"] <= d["mae"] + 0.002 and f["iou"] >= d["iou"] - 0.01 and f["edge"] <= d["edge"], (pid, f, d)
        passes = s["info"]["timings"]["second_pass_ms"]
        assert passes == 0 if pid == FULL_FRAME else passes > 0, (pid, passes)

    def mean(kind: str, metric: str) -> float:
        return float(np.mean([figures[pid][kind][metric] for pid in served]))

    print("\nhighQuality on " + ", ".join(served) + ": " + "; ".join(
        f"{m} {mean('default', m):.4f} -> {mean('hq', m):.4f}" for m in ("mae", "iou", "edge")))
    # the bounds for the whole set (MAE <= 0.029, edge error 13% below the reference),
    # held on these pairs against our own default, which matches rembg (README)
    assert mean("hq", "mae") <= 0.029 and mean("hq", "mae") <= 0.6 * mean("default", "mae")
    assert mean("hq", "edge") <= 0.87 * mean("default", "edge")
    assert mean("hq", "iou") >= mean("default", "iou") + 0.02


def test_a_failing_second_pass_fails_only_its_request(model_repository, tmp_path, pairs):
    """A repository whose postprocess sends the engine pixels it does not take (uint8, as for
    gpu-torch, to a float32 engine): highQuality requests fail with a message naming the second
    pass and the engine's own reason; every other request is served."""
    from rmbg_backend.families import family
    from rmbg_export.configs import RepositorySettings, parse, postprocess_config, render
    from rmbg_server.launcher import ServerConfig, TritonServer

    repo = tmp_path / "repo"
    shutil.copytree(model_repository, repo, ignore=shutil.ignore_patterns("*birefnet*"))
    config = repo / "postprocess_isnet" / "config.pbtxt"
    assert parse(config.read_text()).parameters["model_input"].string_value == "float32"
    config.write_text(render(postprocess_config(family("isnet").spec(), RepositorySettings(target="gpu-torch"))))
    assert parse(config.read_text()).parameters["model_input"].string_value == "uint8"
    data = next(p for p in pairs if p.id == "ecssd_0151").image.read_bytes()
    with TritonServer(ServerConfig.on_free_ports(repo), log_file=tmp_path / "triton.log") as server:
        client = RmbgClient(server.grpc_url, retries=0)
        with pytest.raises(ServerError) as info:  # the server's fault, not the caller's
            client.remove(data, HQ)
        message = str(info.value)
        assert "highQuality second pass on model 'isnet' failed" in message, message
        assert re.search(r"(?i)datatype|data type|UINT8", message), message
        assert mask_of(client.remove(data, MASK)).shape == (400, 346)  # the default path still serves
