"""Capacity model: how many Triton replicas a load and a p99 need, and how the HPA reacts.

No cluster runs here, so the scale-out of docker/kubernetes is computed from what was measured
on one replica (perf/results/perf.json and bench.json: the project's 2-core AMD EPYC VM with
AVX-512 and AVX512-BF16, IS-Net f32 on OpenVINO, see perf/results/EXPERIMENTS.md):

- Queueing: each replica is one server (one engine instance; batching gains nothing on 2 cores,
  EXPERIMENTS.md #6) with service rate mu = its measured saturation throughput. Arrivals from
  many independent clients are Poisson. Service times are nearly constant (squared coefficient
  of variation 0.05 over the 31 eval photos), so the queue is M/G/c close to M/D/c, not M/M/c:
  M/M/c would double the predicted waits. The waiting time uses Erlang C with the
  Allen-Cunneen correction (1 + cs2) / 2, and its tail the matching exponential: P(Wq > t) =
  C * exp(-2 (c mu - lam) t / (1 + cs2)), exact for M/M/c and for the M/D/1 mean. A request's
  latency is its wait plus a served latency drawn from the measured per-photo latencies.
- Balancing: "pooled" is one queue in front of all replicas (the gateway sends each request to
  the least-loaded endpoint); "random" gives each replica its own M/G/1 with lam/c (per-request
  round robin lies between). Both are reported; size on "random" unless the balancer is known.
- HPA: the autoscaling/v2 algorithm on the shipped metric (avg_time_queue_us, queue time per
  request through prometheus-adapter): Prometheus scrapes every 15 s, the rule takes rate()
  over 1 min, the HPA syncs every 15 s, desired = ceil(ready * metric / target) unless within
  the 10 % tolerance, pods without metrics count as 0 on a scale-up, scale-up and scale-down
  policies and stabilisation windows as in docker/kubernetes/base/triton-hpa.yaml, and a new pod
  serves only after it starts: scheduling and container start (assumed), `rmbg build-repo` from
  the shared volume and Triton's start to ready (measured).

``make capacity`` writes perf/results/capacity.json and capacity.png.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SERVED = "served_int8"  # the CPU default engine; bench.json also holds served_f32 and rembg


# ---------------------------------------------------------------- queueing


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``a = lam / mu`` (< c).

    Through the Erlang B recursion, which stays finite for hundreds of servers where the
    factorials of the textbook formula overflow.
    """
    if c < 1 or a < 0:
        raise ValueError(f"need c >= 1 and a >= 0, got c={c}, a={a}")
    if a >= c:
        return 1.0
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho * (1.0 - b))


def wait_tail(lam: float, mu: float, c: int, cs2: float) -> tuple[float, float]:
    """(P(wait > 0), decay rate theta) with P(Wq > t) = p * exp(-theta * t); theta 0 if unstable."""
    if lam >= c * mu:
        return 1.0, 0.0
    return erlang_c(c, lam / mu), 2.0 * (c * mu - lam) / (1.0 + cs2)


def mean_wait(lam: float, mu: float, c: int, cs2: float) -> float:
    p, theta = wait_tail(lam, mu, c, cs2)
    return math.inf if theta == 0 else p / theta


def latency_quantile(q: float, lam: float, mu: float, c: int, cs2: float, served: Sequence[float]) -> float:
    """The q-quantile of wait + served latency, the latter drawn from the measured ``served`` list."""
    p, theta = wait_tail(lam, mu, c, cs2)
    if theta == 0:
        return math.inf

    def exceed(t: float) -> float:  # P(Wq + L > t), L uniform over the measured latencies
        return sum(1.0 if t < s else p * math.exp(-theta * (t - s)) for s in served) / len(served)

    lo, hi = 0.0, max(served) + 1.0
    while exceed(hi) > 1 - q:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if exceed(mid) > 1 - q else (lo, mid)
    return hi


def replicas_for(lam: float, p99_s: float, mu: float, cs2: float, served: Sequence[float],
                 balancing: str = "random", max_utilisation: float = 0.9, limit: int = 10000) -> int | None:
    """Fewest replicas whose p99 latency is within ``p99_s`` at load ``lam``; None if none can.

    No replica is planned above ``max_utilisation``: a pooled queue meets a p99 close to 100 %
    busy on paper, but then the loss of one pod or a 10 % error in the measured rate overloads it.
    """
    if sorted(served)[math.ceil(0.99 * len(served)) - 1] > p99_s:
        return None  # the service alone is slower than the target
    for c in range(max(1, math.ceil(lam / (mu * max_utilisation))), limit + 1):
        if balancing == "pooled":
            p99 = latency_quantile(0.99, lam, mu, c, cs2, served)
        elif balancing == "random":
            p99 = latency_quantile(0.99, lam / c, mu, 1, cs2, served)
        else:
            raise ValueError(f"balancing must be pooled or random, got {balancing!r}")
        if p99 <= p99_s:
            return c
    return None


# ---------------------------------------------------------------- the HPA


@dataclass(frozen=True)
class Policy:
    kind: str  # "Pods" or "Percent"
    value: int
    period_s: int


@dataclass(frozen=True)
class Hpa:
    """docker/kubernetes/base/triton-hpa.yaml with the cpu overlay's target (checked by a test)."""

    target: float = 400_000.0  # avg_time_queue_us
    rps_target: float | None = 1.84  # avg_requests_per_second: 75 % of a replica's measured 2.456 (int8)
    min_replicas: int = 2
    max_replicas: int = 16
    tolerance: float = 0.1
    sync_s: int = 15
    up_window_s: int = 0
    down_window_s: int = 300
    up: tuple[Policy, ...] = (Policy("Percent", 100, 15), Policy("Pods", 4, 15))
    down: tuple[Policy, ...] = (Policy("Percent", 50, 60),)


@dataclass(frozen=True)
class Timing:
    scrape_s: int = 15  # ServiceMonitor interval
    rate_window_s: int = 60  # the adapter rule's rate(...[1m])
    schedule_and_start_s: float = 5.0  # assumed: node has room and the image cached
    build_repo_s: float = 1.1  # measured: rmbg build-repo with the weights on the shared volume
    triton_ready_s: float = 10.9  # measured: rmbg serve start to ready, slowest of 3 runs here
    probe_period_s: float = 5.0  # readiness probe period: on average half of it passes unseen

    @property
    def pod_start_s(self) -> float:
        return self.schedule_and_start_s + self.build_repo_s + self.triton_ready_s + self.probe_period_s / 2


def hpa_desired(ready: int, metric: float, target: float, tolerance: float = 0.1, unready: int = 0) -> int:
    """autoscaling/v2 for an AverageValue Pods metric: ceil(ready * metric / target).

    Within the tolerance nothing changes. On a scale-up, pods that are not ready yet (no metric)
    count as zero, which damps the next step while they start, as the controller does.
    """
    ratio = metric / target
    if abs(ratio - 1.0) <= tolerance:
        return ready + unready
    if ratio > 1.0 and unready:
        diluted = ready * metric / ((ready + unready) * target)
        if diluted <= 1.0 + tolerance:
            return ready + unready
    return max(1, math.ceil(ready * metric / target))


def _policy_limit(policies: Sequence[Policy], base: int, up: bool) -> int:
    limits = []
    for p in policies:
        if p.kind == "Pods":
            limits.append(base + p.value if up else base - p.value)
        elif up:
            limits.append(math.ceil(base * (1 + p.value / 100)))
        else:
            limits.append(math.ceil(base * (1 - p.value / 100)))
    return max(limits) if up else min(limits)  # selectPolicy: Max (the largest change)


@dataclass
class Trace:
    t: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    ready: list[int] = field(default_factory=list)
    desired: list[int] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)  # mean queue time of a request arriving now
    metric_s: list[float] = field(default_factory=list)  # what the HPA last read


def simulate(load: Callable[[float], float], mu: float, cs2: float, hpa: Hpa, timing: Timing,
             duration_s: float, start_replicas: int, dt: float = 1.0) -> Trace:
    """Fluid backlog plus stationary M/G/c waits, under the HPA loop, one step per ``dt``."""
    tr = Trace()
    backlog = 0.0
    spec = start_replicas
    starting: list[float] = []  # times at which started pods become ready
    ready = start_replicas
    events: list[tuple[float, int, int]] = []  # (time, replicas before, replicas after)
    recommendations: list[tuple[float, int]] = [(0.0, start_replicas)]  # a steady history
    samples: list[tuple[float, float, float]] = []  # scraped (time, wait, served per ready pod)
    metric = 0.0
    steps = int(duration_s / dt)
    for i in range(steps + 1):
        t = i * dt
        ready += sum(1 for s in starting if s <= t)
        starting = [s for s in starting if s > t]
        lam = load(t)
        capacity = mu * ready
        backlog = max(0.0, backlog + (lam - capacity) * dt)
        # A queue near saturation waits as its stationary law says; beyond it the backlog grows.
        stationary = mean_wait(min(lam, 0.95 * capacity), mu, ready, cs2)
        wait = backlog / capacity + stationary
        if i % round(timing.scrape_s / dt) == 0:
            samples.append((t, wait, min(lam, capacity) / ready))
        if i % round(hpa.sync_s / dt) == 0 and i > 0:
            window = [(w, x) for s, w, x in samples if s > samples[-1][0] - timing.rate_window_s]
            metric = sum(w for w, _ in window) / len(window)
            proposal = hpa_desired(ready, metric * 1e6, hpa.target, hpa.tolerance, len(starting))
            if hpa.rps_target is not None:  # several metrics: the HPA follows the largest proposal
                served = sum(x for _, x in window) / len(window)
                proposal = max(proposal, hpa_desired(ready, served, hpa.rps_target, hpa.tolerance, len(starting)))
            recommendations = [(s, r) for s, r in recommendations if s > t - max(hpa.down_window_s, 1)]
            recommendations.append((t, proposal))
            if proposal > spec:
                stable = min(r for s, r in recommendations if s > t - max(hpa.up_window_s, 1))
                added = sum(n - o for s, o, n in events if n > o and s > t - hpa.up[0].period_s)
                new = min(stable, _policy_limit(hpa.up, spec - added, True))
            else:
                stable = max(r for _, r in recommendations)
                removed = sum(o - n for s, o, n in events if n < o and s > t - hpa.down[0].period_s)
                new = max(stable, _policy_limit(hpa.down, spec + removed, False))
            new = min(max(new, hpa.min_replicas), hpa.max_replicas)
            if new > spec:
                starting += [t + timing.pod_start_s] * (new - spec)
            elif new < spec:
                drop = spec - new
                cancelled = min(drop, len(starting))
                starting = starting[:len(starting) - cancelled]
                ready -= drop - cancelled
            if new != spec:
                events.append((t, spec, new))
                spec = new
        tr.t.append(t)
        tr.load.append(lam)
        tr.ready.append(ready)
        tr.desired.append(spec)
        tr.wait_s.append(wait)
        tr.metric_s.append(metric)
    return tr


# ---------------------------------------------------------------- measured inputs and report


def measured(results: Path = RESULTS) -> dict:
    """Per-replica figures of the CPU default (int8) from the committed benchmark runs."""
    perf = json.loads((results / "perf.json").read_text())
    bench = json.loads((results / "bench.json").read_text())
    best = max(perf["results"]["grpc_concurrency"], key=lambda r: r["images_per_s"])
    steps = [sum(p[f"{SERVED}_steps"].values()) for p in bench["per_image"]]
    mean = sum(steps) / len(steps)
    cs2 = sum((s - mean) ** 2 for s in steps) / len(steps) / mean**2
    return {
        "source_cpu": {"perf.json": perf.get("machine"), "bench.json": bench.get("machine")},
        "mu_images_per_s": best["images_per_s"],
        "mu_from": f"perf.json grpc_concurrency at concurrency {best['concurrency']:g} "
                   f"(perf_analyzer, rmbg_isnet, {perf.get('precision') or 'precision not recorded'})",
        "service_cs2": cs2,
        "cs2_from": f"bench.json per_image: sum of the {SERVED} steps over the {len(steps)} eval photos",
        "served_s": [p[f"{SERVED}_ms"] / 1000 for p in bench["per_image"]],
        "served_from": f"bench.json per_image {SERVED}_ms (concurrency 1, no queueing)",
    }


def step_load(before: float, after: float, at_s: float, until_s: float) -> Callable[[float], float]:
    return lambda t: after if at_s <= t < until_s else before


def steady_replicas(lam: float, mu: float, cs2: float, hpa: Hpa) -> int:
    """Where the HPA settles for a constant load: the fewest replicas it would not scale up from."""
    for r in range(hpa.min_replicas, hpa.max_replicas + 1):
        queue_ok = lam < mu * r and mean_wait(lam, mu, r, cs2) * 1e6 <= hpa.target * (1 + hpa.tolerance)
        if queue_ok and (hpa.rps_target is None or lam / r <= hpa.rps_target * (1 + hpa.tolerance)):
            return r
    return hpa.max_replicas


def _every(trace: dict[str, list], step: int) -> dict[str, list]:
    """Every ``step``-th point, rounded: the JSON keeps the shape, the plot uses every point."""
    return {k: [round(x, 3) if isinstance(x, float) else x for x in v[::step]] for k, v in trace.items()}


def report(out_dir: Path = RESULTS) -> dict:
    m = measured()
    mu, cs2, served = m["mu_images_per_s"], m["service_cs2"], m["served_s"]
    loads = [1, 2, 5, 10, 20, 50, 100]
    targets = [2.0, 3.0, 5.0]
    table = [
        {"load_images_per_s": lam, "p99_target_s": p99,
         "replicas_pooled": replicas_for(lam, p99, mu, cs2, served, "pooled"),
         "replicas_random": replicas_for(lam, p99, mu, cs2, served, "random")}
        for lam in loads for p99 in targets
    ]
    for row in table:
        c = row["replicas_random"]
        row["utilisation_random"] = None if c is None else row["load_images_per_s"] / (c * mu)
    hpa, timing = Hpa(), Timing()
    before, after = 2.0, 8.0
    # Steps fall between scrapes and syncs (7 s after one), as they would in a real cluster.
    scenario = {"load_before": before, "load_after": after, "step_at_s": 67, "step_back_at_s": 967,
                "duration_s": 1800}
    start = steady_replicas(before, mu, cs2, hpa)
    load = step_load(before, after, scenario["step_at_s"], scenario["step_back_at_s"])
    trace = simulate(load, mu, cs2, hpa, timing, scenario["duration_s"], start)
    # The same HPA on queue time alone (the gpu overlay, until a GPU rate is measured).
    queue_only = replace(hpa, rps_target=None)
    alone = simulate(load, mu, cs2, queue_only, timing, scenario["duration_s"], steady_replicas(before, mu, cs2,
                                                                                               queue_only))
    hold = [i for i, t in enumerate(alone.t) if scenario["step_at_s"] + 300 <= t < scenario["step_back_at_s"]]
    need = math.ceil(after / mu)
    first_up = next(t for t, d in zip(trace.t, trace.desired, strict=True) if d > start)
    enough = next(t for t, r in zip(trace.t, trace.ready, strict=True) if t > scenario["step_at_s"] and r >= need)
    peak_wait = max(trace.wait_s)
    held = trace.desired[trace.t.index(scenario["step_back_at_s"])]
    down = next((t for t, d in zip(trace.t, trace.desired, strict=True)
                 if t > scenario["step_back_at_s"] and d < held), None)
    result = {
        "command": "make capacity (python perf/capacity.py)",
        "model": "M/G/c (Erlang C, Allen-Cunneen), served latency from measurements; HPA autoscaling/v2 loop",
        "inputs": {k: v for k, v in m.items() if k != "served_s"} | {
            "served_p50_s": sorted(served)[len(served) // 2],
            "served_p99_s": sorted(served)[math.ceil(0.99 * len(served)) - 1]},
        "table": table,
        "hpa": asdict(hpa),
        "timing": asdict(timing) | {"pod_start_s": timing.pod_start_s},
        "scenario": scenario | {
            "start_replicas": start, "replicas_needed_after": need,
            "first_scale_up_s_after_step": first_up - scenario["step_at_s"],
            "enough_ready_s_after_step": enough - scenario["step_at_s"],
            "peak_queue_wait_s": peak_wait,
            "max_replicas": max(trace.desired),
            "replicas_held_at_load_after": held,
            "first_scale_down_s_after_step_back": None if down is None else down - scenario["step_back_at_s"],
        },
        "queue_time_only": {
            "scale_ups_while_load_held": sum(1 for i in hold if alone.desired[i] > alone.desired[i - 1]),
            "min_ready_while_load_held": min(alone.ready[i] for i in hold),
            "peak_queue_wait_s_while_load_held": max(alone.wait_s[i] for i in hold),
        },
        "trace": _every(asdict(trace), 5),
        "trace_queue_time_only": _every(asdict(alone), 5),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "capacity.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    plot(trace, alone, hpa, mu, scenario, out_dir / "capacity.png")
    return result


def plot(trace: Trace, alone: Trace, hpa: Hpa, mu: float, scenario: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [t / 60 for t in trace.t]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    ax1.plot(minutes, trace.load, label="offered load", color="black")
    ax1.plot(minutes, [r * mu for r in trace.ready], label="capacity of ready replicas", color="tab:green")
    ax1.set_ylabel("images/s")
    ax1.legend(loc="upper right")
    ax1.set_title(f"Triton HPA (queue time + throughput per pod): load {scenario['load_before']:g} -> "
                  f"{scenario['load_after']:g} images/s and back\n(CPU replicas, {mu:.2f} images/s each)")
    ax2.step(minutes, trace.desired, where="post", label="desired (HPA)", color="tab:blue")
    ax2.step(minutes, trace.ready, where="post", label="ready", color="tab:green")
    ax2.step(minutes, alone.ready, where="post", label="ready, HPA on queue time alone", color="tab:purple",
             ls=":", alpha=0.8)
    ax2.set_ylabel("replicas")
    ax2.legend(loc="upper right")
    ax3.plot(minutes, trace.wait_s, label="queue time of a request arriving now", color="tab:red")
    ax3.plot(minutes, trace.metric_s, label="avg_time_queue_us as the HPA read it", color="tab:orange")
    ax3.axhline(hpa.target / 1e6, ls="--", color="gray", label="HPA target")
    ax3.set_yscale("symlog", linthresh=0.1)
    ax3.set_ylim(bottom=0)
    ax3.set_ylabel("seconds")
    ax3.set_xlabel("minutes")
    ax3.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    r = report(a.out)
    print(f"per replica: {r['inputs']['mu_images_per_s']:.3f} images/s, service cs2 {r['inputs']['service_cs2']:.3f}, "
          f"served p99 {r['inputs']['served_p99_s']:.2f} s, {SERVED})")
    print("load  p99   replicas(pooled)  replicas(random)")
    for row in r["table"]:
        print(f"{row['load_images_per_s']:>4}  {row['p99_target_s']:>3.0f} s  {row['replicas_pooled']!s:>16}  "
              f"{row['replicas_random']!s:>16}")
    s = r["scenario"]
    print(f"step {s['load_before']:g} -> {s['load_after']:g} images/s: first scale-up after "
          f"{s['first_scale_up_s_after_step']:.0f} s, {s['replicas_needed_after']} replicas ready after "
          f"{s['enough_ready_s_after_step']:.0f} s, peak queue wait {s['peak_queue_wait_s']:.1f} s; "
          f"first scale-down {s['first_scale_down_s_after_step_back']} s after the load fell")
    q = r["queue_time_only"]
    print(f"on queue time alone, while the load is held: {q['scale_ups_while_load_held']} scale-ups, down to "
          f"{q['min_ready_while_load_held']} ready replicas, queue waits up to "
          f"{q['peak_queue_wait_s_while_load_held']:.1f} s")
    print(f"wrote {a.out / 'capacity.json'} and {a.out / 'capacity.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
