"""The served ensemble through gRPC and HTTP, sync and asyncio, with good and bad inputs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from rmbg_client import AsyncRmbgClient, InvalidInputError, RmbgClient
from rmbg_server.launcher import http_json
from rmbg_server.watchdog import stub_processes
from tests.harness.processes import as_another_user

pytestmark = pytest.mark.triton


def open_result(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cutout_keeps_size_and_reports_timings(triton, small_jpeg, protocol):
    url = triton.grpc_url if protocol == "grpc" else triton.http_url.removeprefix("http://")
    with RmbgClient(url, protocol) as client:
        assert client.ready()
        result = client.remove(small_jpeg)
    im = open_result(result.data)
    src = Image.open(io.BytesIO(small_jpeg))
    assert im.format == "PNG" and im.mode == "RGBA" and im.size == src.size
    alpha = np.asarray(im)[:, :, 3]
    assert (alpha == 0).mean() > 0.2 and (alpha == 255).mean() > 0.05  # both regions present
    info = result.info
    assert (info["width"], info["height"]) == src.size
    assert info["contentType"] == "image/png" and info["model"] == "isnet"
    assert set(info["timings"]) == {"decode_ms", "preprocess_ms", "model_ms", "postprocess_ms", "encode_ms"}
    assert info["timings"]["model_ms"] > info["timings"]["preprocess_ms"]


def test_grpc_and_http_give_identical_bytes(triton, small_jpeg):
    a = RmbgClient(triton.grpc_url, "grpc").remove(small_jpeg, {"returnOnlyMask": True})
    b = RmbgClient(triton.http_url.removeprefix("http://"), "http").remove(small_jpeg, {"returnOnlyMask": True})
    assert a.data == b.data


def test_async_client_many_images(triton, pairs):
    images = [(p.id, p.image.read_bytes()) for p in pairs if p.id.startswith("ecssd")][:4]

    async def go():
        async with AsyncRmbgClient(triton.grpc_url) as client:
            return [item async for item in client.remove_many(images, {"returnOnlyMask": True}, concurrency=4)]

    results = dict(asyncio.run(go()))
    assert set(results) == {k for k, _ in images}
    for key, data in images:
        assert open_result(results[key].data).size == Image.open(io.BytesIO(data)).size


def test_exif_orientation_is_applied_before_segmentation(triton, small_jpeg):
    src = Image.open(io.BytesIO(small_jpeg))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW to display
    buf = io.BytesIO()
    src.save(buf, format="JPEG", exif=exif, quality=95)
    result = RmbgClient(triton.grpc_url).remove(buf.getvalue())
    assert open_result(result.data).size == (src.height, src.width)


def _stats(triton, model):
    _, body = http_json(f"{triton.http_url}/v2/models/{model}/stats")
    s = body["model_stats"][0]
    return s["inference_count"], s["execution_count"]


BAD = {
    "empty": (b"", "{}", "IMAGE: is empty"),
    "garbage": (b"GIF89a-but-not-really" * 3, "{}", "IMAGE:"),
    "options-not-json": (None, "{nope", "OPTIONS: is not valid JSON"),
    "options-not-object": (None, "[]", "OPTIONS: must be a JSON object"),
    "unknown-key": (None, '{"colour": 1}', "colour: unknown option"),
    "quality": (None, '{"outputQuality": 5}', "outputQuality: must be in 20..99"),
}


def test_bad_requests_fail_alone_while_their_batch_succeeds(triton, pairs, small_jpeg):
    """Send good and bad requests at once (the dynamic batcher groups them) and check each."""
    good = [p.image.read_bytes() for p in pairs if p.id.startswith("ecssd")][:4]
    truncated = small_jpeg[: len(small_jpeg) // 2]
    jobs = [("good", g, "{}", None) for g in good]
    jobs += [(name, img if img is not None else small_jpeg, opts, msg) for name, (img, opts, msg) in BAD.items()]
    jobs.append(("truncated", truncated, "{}", "IMAGE: is truncated or corrupt"))
    before = _stats(triton, "preprocess_isnet")
    client = RmbgClient(triton.grpc_url)

    def run(job):
        name, img, opts, msg = job
        try:
            return name, client.remove(img, opts), msg
        except InvalidInputError as exc:
            return name, exc, msg

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    after = _stats(triton, "preprocess_isnet")
    for name, result, msg in results:
        if name == "good":
            assert not isinstance(result, Exception), result
            assert open_result(result.data).mode == "RGBA"
        else:
            assert isinstance(result, InvalidInputError), (name, result)
            assert msg in str(result), (name, str(result))
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == len(jobs)
    assert executions < inferences, "no two requests shared a preprocess batch"
    assert client.remove(good[0]).info["width"] > 0  # and the server keeps serving


def test_cli_remove_directory_with_one_corrupt_file(triton, pairs, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    chosen = [p for p in pairs if p.id.startswith("ecssd")][:2]
    (src / "a.jpg").write_bytes(chosen[0].image.read_bytes())
    (src / "sub" / "b.jpg").write_bytes(chosen[1].image.read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n-broken")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "rmbg_cli.main", "remove", str(src), "-o", str(out), "--url", triton.grpc_url,
         "--format", "webp", "--concurrency", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stderr and "broken.png" in proc.stderr and "IMAGE:" in proc.stderr
    assert "2 of 3 written" in proc.stdout
    for rel in ("a.webp", "sub/b.webp"):
        assert open_result((out / rel).read_bytes()).format == "WEBP"
    assert not (out / "broken.webp").exists()


def test_cli_reports_unreachable_server(tmp_path, small_jpeg):
    (tmp_path / "x.jpg").write_bytes(small_jpeg)
    proc = subprocess.run(
        [sys.executable, "-m", "rmbg_cli.main", "remove", str(tmp_path / "x.jpg"), "-o", str(tmp_path / "o"),
         "--url", "127.0.0.1:1"], capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "not reachable" in proc.stderr


def test_info_is_json_and_model_step_dominates(triton, pairs):
    """A photo of the eval set's median size: every step reports its own time, together they
    fit inside the wall time the client saw, and the model's is the largest by far (there,
    decode + pre + post + encode take about 4% of it; asserting under half leaves room for a
    busy machine, yet catches a step timed in the wrong place or unit). The 10% target itself,
    and the large photos where encoding grows, are measured by `make bench`, not here."""
    by_size = sorted(pairs, key=lambda p: p.width * p.height)
    photo = by_size[len(by_size) // 2]
    t0 = time.perf_counter()
    result = RmbgClient(triton.grpc_url).remove(photo.image.read_bytes())
    wall_ms = (time.perf_counter() - t0) * 1000
    t = result.info["timings"]
    assert json.loads(json.dumps(result.info)) == result.info
    assert open_result(result.data).size == (photo.width, photo.height)
    steps = ("decode_ms", "preprocess_ms", "model_ms", "postprocess_ms", "encode_ms")
    assert all(t[k] > 0 for k in steps), t
    assert sum(t[k] for k in steps) < wall_ms, (t, wall_ms)
    assert sum(t[k] for k in steps if k != "model_ms") < 0.5 * t["model_ms"], t


def test_admin_key_is_not_visible_to_other_users(triton):
    """The key opens model load/unload: it must not show in ps or /proc/PID/cmdline, of the
    server or of its stubs, nor in the server's log."""
    key = triton.cfg.admin_key.encode()
    pids = [triton.process.pid, *stub_processes(triton.process.pid)]
    assert len(pids) >= 4  # the server, and the pre, engine and post stubs at least
    for pid in pids:
        seen = as_another_user("cat", f"/proc/{pid}/cmdline")
        assert seen.returncode == 0 and key not in seen.stdout
    assert b"admin-key=<hidden>" in as_another_user("cat", f"/proc/{triton.process.pid}/cmdline").stdout
    assert key not in as_another_user("ps", "-eo", "args").stdout
    if os.geteuid() == 0:  # the environment, which carries it, is the owner's only
        assert as_another_user("cat", f"/proc/{triton.process.pid}/environ").returncode != 0
    assert key not in triton.log_file.read_bytes()


def test_admin_apis_need_the_launchers_key(triton):
    """Anyone who reaches the port may infer, but not unload models or map shared memory."""
    status, body = http_json(f"{triton.http_url}/v2/repository/models/rmbg_isnet/unload", method="POST")
    assert status in (401, 403), (status, body)
    status, _ = http_json(f"{triton.http_url}/v2/systemsharedmemory/status")
    assert status in (401, 403)
    assert {m["name"] for m in triton.models()} >= {"rmbg_isnet", "isnet"}  # with the key it works
    from tritonclient.grpc import InferenceServerClient, InferenceServerException

    grpc = InferenceServerClient(triton.grpc_url)
    with pytest.raises(InferenceServerException):
        grpc.unload_model("rmbg_isnet")
    assert grpc.is_model_ready("rmbg_isnet")
