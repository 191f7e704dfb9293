"""perf/capacity.py: the queueing math against closed forms, the HPA rule against the
Kubernetes documentation's examples, the simulated HPA against the shipped manifest."""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "perf"))
import capacity  # noqa: E402  (perf/ holds scripts, not a package)
from capacity import Hpa, Policy, Timing, erlang_c, hpa_desired, latency_quantile, mean_wait  # noqa: E402


@pytest.mark.parametrize("c,a,expected", [
    (1, 0.3, Fraction(3, 10)),  # M/M/1: P(wait) = rho
    (2, 1.0, Fraction(1, 3)),   # P0 = 1/3, C = (a^2/2!) (1/(1-rho)) P0
    (3, 2.0, Fraction(4, 9)),   # sum a^k/k! (k<3) = 5, (a^3/3!)/(1-rho) = 4
])
def test_erlang_c_matches_the_closed_form(c, a, expected):
    assert erlang_c(c, a) == pytest.approx(float(expected), rel=1e-12)


def test_erlang_c_stays_finite_for_many_servers_and_is_one_when_overloaded():
    value = erlang_c(500, 480.0)  # 500! overflows a float; the recursion does not
    assert 0.0 < value < 1.0
    assert erlang_c(4, 4.0) == 1.0 and erlang_c(4, 5.0) == 1.0
    assert erlang_c(10, 5.0) < erlang_c(10, 8.0) < erlang_c(10, 9.5)


def test_mean_wait_is_exact_for_mm1_mmc_and_md1():
    lam, mu = 0.9, 1.25
    rho = lam / mu
    assert mean_wait(lam, mu, 1, cs2=1.0) == pytest.approx(rho / (mu - lam))  # M/M/1
    assert mean_wait(lam, mu, 1, cs2=0.0) == pytest.approx(rho / (2 * mu * (1 - rho)))  # Pollaczek-Khinchine
    assert mean_wait(5.0, 1.0, 7, cs2=1.0) == pytest.approx(erlang_c(7, 5.0) / (7 - 5.0))  # M/M/c
    assert mean_wait(1.3, 1.25, 1, cs2=0.0) == math.inf


def test_latency_quantile_adds_the_exact_mm1_wait_tail_to_a_constant_service():
    lam, mu, s = 0.5, 1.0, 0.8
    # P(Wq > t) = rho exp(-(mu - lam) t) for M/M/1; the 0.99 quantile solves rho e^{-x t} = 0.01.
    expected = s + math.log((lam / mu) / 0.01) / (mu - lam)
    assert latency_quantile(0.99, lam, mu, 1, 1.0, [s]) == pytest.approx(expected, rel=1e-6)
    served = [0.5, 0.7, 0.9, 1.6]
    assert latency_quantile(0.5, 1e-9, mu, 1, 0.0, served) == pytest.approx(0.9, rel=1e-6)  # no queue


def test_replica_counts_are_monotone_and_pooled_never_needs_more():
    served = [0.8] * 30 + [1.6]
    assert capacity.replicas_for(5, 1.5, 1.285, 0.05, served) is None  # slower than the target alone
    previous = 0
    for lam in (1, 2, 5, 10, 20):
        pooled = capacity.replicas_for(lam, 3.0, 1.285, 0.05, served, "pooled")
        spread = capacity.replicas_for(lam, 3.0, 1.285, 0.05, served, "random")
        assert pooled >= previous and pooled <= spread
        assert lam / (pooled * 1.285) <= 0.9  # headroom kept
        previous = pooled


@pytest.mark.parametrize("ready,metric,target,unready,expected", [
    (1, 200, 100, 0, 2),    # the documentation's example: metric twice the target doubles
    (4, 50, 100, 0, 2),     # half the target halves
    (4, 105, 100, 0, 4),    # within the 10 % tolerance: no change
    (3, 600_000, 400_000, 0, 5),
    (2, 150, 100, 2, 4),    # on a scale-up, starting pods count as 0: 2*150/(4*100) = 0.75 -> hold
    (2, 300, 100, 1, 6),    # 2*300/(3*100) = 2 > 1.1: scale to ceil(2*300/100)
])
def test_hpa_rule_is_the_kubernetes_formula(ready, metric, target, unready, expected):
    assert hpa_desired(ready, metric, target, 0.1, unready) == expected


def test_simulated_step_respects_policies_windows_and_start_time():
    hpa, timing = Hpa(), Timing()
    mu, cs2 = 1.285, 0.05
    load = capacity.step_load(2.0, 8.0, 67, 967)
    start = capacity.steady_replicas(2.0, mu, cs2, hpa)
    tr = capacity.simulate(load, mu, cs2, hpa, timing, 1800, start)
    assert all(hpa.min_replicas <= d <= hpa.max_replicas for d in tr.desired)
    for i in range(1, len(tr.t)):  # scale-up per sync: at most max(double, +4)
        assert tr.desired[i] <= max(2 * tr.desired[i - 1], tr.desired[i - 1] + 4)
    first_up = next(t for t, d in zip(tr.t, tr.desired, strict=True) if d > start)
    assert 67 <= first_up <= 67 + timing.scrape_s + hpa.sync_s
    first_ready = next(t for t, r in zip(tr.t, tr.ready, strict=True) if r > start)
    assert first_ready - first_up == pytest.approx(math.ceil(timing.pod_start_s), abs=1)
    held = tr.desired[tr.t.index(967)]
    assert held * mu > 8.0  # the load is carried while it lasts
    first_down = next(t for t, d in zip(tr.t, tr.desired, strict=True) if t > 967 and d < held)
    assert first_down - 967 >= hpa.down_window_s - timing.rate_window_s - hpa.sync_s
    assert tr.desired[-1] == start  # back where it began


def test_simulated_hpa_is_the_shipped_one():
    from tests.docker.test_kubernetes import K8S, one, render

    spec = one(render(K8S / "overlays" / "cpu"), "HorizontalPodAutoscaler", "rmbg-triton")["spec"]
    hpa = Hpa()
    targets = {m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in spec["metrics"]}
    assert float(targets["avg_time_queue_us"]) == hpa.target
    assert float(targets["avg_requests_per_second"].removesuffix("m")) / 1000 == hpa.rps_target
    assert (spec["minReplicas"], spec["maxReplicas"]) == (hpa.min_replicas, hpa.max_replicas)
    b = spec["behavior"]
    assert b["scaleUp"]["stabilizationWindowSeconds"] == hpa.up_window_s
    assert b["scaleDown"]["stabilizationWindowSeconds"] == hpa.down_window_s
    for policies, ours in ((b["scaleUp"]["policies"], hpa.up), (b["scaleDown"]["policies"], hpa.down)):
        assert tuple(Policy(p["type"], p["value"], p["periodSeconds"]) for p in policies) == ours
    assert b["scaleUp"]["selectPolicy"] == b["scaleDown"]["selectPolicy"] == "Max"


def test_report_uses_the_committed_measurements_and_writes_json_and_plot(tmp_path):
    result = capacity.report(tmp_path)
    perf = json.loads((ROOT / "perf" / "results" / "perf.json").read_text())
    assert result["inputs"]["mu_images_per_s"] == max(r["images_per_s"] for r in perf["results"]["grpc_concurrency"])
    assert 0 < result["inputs"]["service_cs2"] < 0.2  # near-constant service: M/D/c, not M/M/c
    assert json.loads((tmp_path / "capacity.json").read_text())["table"] == result["table"]
    assert (tmp_path / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alone = result["queue_time_only"]
    assert alone["min_ready_while_load_held"] * result["inputs"]["mu_images_per_s"] < 8.0  # it under-provisions
