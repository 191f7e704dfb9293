"""perf/bench_gpu.py runs end to end on the CPU (--smoke) and never writes GPU figures from it.

The served part of the smoke run starts its own Triton server; it is left to the script's
manual smoke run (the gpu-torch target is served in tests/integration/test_gpu_torch_served.py).
"""

from __future__ import annotations

import json

import pytest

from perf import bench_gpu


def test_a_cpu_smoke_run_refuses_to_write_the_results_directory(tmp_path):
    target = bench_gpu.ROOT / "perf" / "results" / "gpu_h100.json"
    before = target.read_bytes() if target.exists() else None
    assert bench_gpu.main(["--device", "cpu", "--smoke", "--out", str(target)]) == 2
    assert (target.read_bytes() if target.exists() else None) == before


@pytest.mark.slow
def test_smoke_model_alone_and_precision_parts_on_the_cpu(tmp_path):
    out = tmp_path / "smoke.json"
    assert bench_gpu.main(["--device", "cpu", "--smoke", "--models", "isnet", "--skip", "served",
                           "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["smoke"] is True and report["environment"]["torch"]
    alone = report["model_alone"]["isnet"]
    assert alone["variant"] == "isnet-tiny" and alone["size"] == 64 and alone["flops_per_image"] > 1e6
    assert [(r["precision"], r["batch"]) for r in alone["rows"]] == [
        (p, b) for p in ("f32", "fp16", "bf16") for b in (1, 2)]
    for row in alone["rows"]:
        assert row["images_per_s"] > 0 and row["host_images_per_s"] > 0
        assert row["fraction_of_ceiling"] == pytest.approx(
            alone["flops_per_image"] * row["images_per_s"] / bench_gpu.CEILING_FLOPS)
    diff = report["precision_diff"]["isnet"]
    assert len(diff["photos"]) == 2
    assert 0 < diff["fp16"]["mean_abs_diff"] < diff["bf16"]["mean_abs_diff"] < 0.01
