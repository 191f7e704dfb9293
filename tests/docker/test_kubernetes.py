"""docker/kubernetes: both overlays and the KServe alternative render with kubectl kustomize,
the built-in kinds pass kubernetes-validate in strict mode, and the invariants of the README's
"Scale-out" section hold in what would be applied (not in the source files)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from tests.conftest import ROOT

K8S = ROOT / "docker" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still in common managed-cluster support
CRD_KINDS = {"ServiceMonitor", "InferenceService"}  # no schema in kubernetes-validate: checked below
RENDERED = {"cpu": K8S / "overlays" / "cpu", "gpu": K8S / "overlays" / "gpu", "kserve": K8S / "kserve"}


def render(path: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client); the manifests "
                    "cannot be rendered")
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(path) for name, path in RENDERED.items()}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    specs = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            specs.append((f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "InferenceService":
            specs.append((f"InferenceService/{d['metadata']['name']}", d["spec"]["predictor"]))
    return specs


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def container(docs: list[dict], deployment: str, name: str) -> dict:
    spec = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    return next(c for c in containers(spec) if c["name"] == name)


def arg_values(c: dict) -> dict[str, str]:
    return dict(a.split("=", 1) for a in c["args"] if a.startswith("--") and "=" in a)


@pytest.mark.parametrize("overlay", sorted(RENDERED))
def test_builtin_kinds_pass_strict_schema_validation(rendered, overlay):
    skipped = set()
    for doc in rendered[overlay]:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except SchemaNotFoundError:
            skipped.add(doc["kind"])
    assert skipped <= CRD_KINDS, f"no schema for {skipped - CRD_KINDS}: only CRDs may go unvalidated"


def test_strict_validation_catches_a_misspelt_field(rendered):
    deployment = copy.deepcopy(one(rendered["cpu"], "Deployment", "rmbg-triton"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resource"] = {"limits": {"cpu": "1"}}
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", sorted(RENDERED))
def test_every_container_has_resources_and_a_restricted_security_context(rendered, overlay):
    specs = pod_specs(rendered[overlay])
    assert specs
    for owner, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, owner
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", owner
        assert spec["automountServiceAccountToken"] is False, owner
        for c in containers(spec):
            where = f"{owner} container {c['name']}"
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{where}: {kind} lacks cpu or memory"
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert ":" in c["image"] and not c["image"].endswith(":latest"), f"{where}: image {c['image']} not pinned"
            mounted = {m["mountPath"] for m in c.get("volumeMounts", [])}
            if c["name"] != "redis":  # Python writes temporary files; redis writes only /data
                assert "/tmp" in mounted, f"{where}: read-only root needs a writable /tmp"


def test_gpu_resources_only_in_the_gpu_deployments(rendered):
    for overlay, docs in rendered.items():
        for owner, spec in pod_specs(docs):
            for c in containers(spec):
                gpus = {k: v.get("nvidia.com/gpu") for k, v in c["resources"].items()}
                wants_gpu = overlay in ("gpu", "kserve") and c["name"] in ("triton", "build-repo", "kserve-container")
                if wants_gpu:
                    assert gpus == {"requests": 1, "limits": 1}, f"{overlay} {owner} {c['name']}: {gpus}"
                else:
                    assert set(gpus.values()) == {None}, f"{overlay} {owner} {c['name']} asks for a GPU"


@pytest.mark.parametrize("overlay,target", [("cpu", "cpu"), ("gpu", "gpu-trt")])
def test_overlay_picks_its_engine(rendered, overlay, target):
    assert one(rendered[overlay], "ConfigMap", "rmbg-triton-config")["data"]["RMBG_TARGET"] == target


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_triton_probes_use_the_health_endpoints(rendered, overlay):
    c = container(rendered[overlay], "rmbg-triton", "triton")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert c["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["args"] == ["serve"]


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_init_container_builds_the_repository_into_the_served_volume(rendered, overlay):
    docs = rendered[overlay]
    spec = one(docs, "Deployment", "rmbg-triton")["spec"]["template"]["spec"]
    init, server = spec["initContainers"][0], spec["containers"][0]
    assert init["args"] == ["prepare"] and init["image"] == server["image"]
    assert init["envFrom"] == server["envFrom"]  # same settings, so the same key directory
    mount = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mount["models"] == "/models" and {"name": "models", "mountPath": "/models"} in server["volumeMounts"]
    models = next(v for v in spec["volumes"] if v["name"] == "models")  # shared: a new pod reuses a build
    claim = models["persistentVolumeClaim"]["claimName"]
    assert one(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_headless_service_for_grpc_balancing_and_a_normal_one(rendered, overlay):
    docs = rendered[overlay]
    pod_labels = one(docs, "Deployment", "rmbg-triton")["spec"]["template"]["metadata"]["labels"]
    headless = one(docs, "Service", "rmbg-triton-headless")["spec"]
    normal = one(docs, "Service", "rmbg-triton")["spec"]
    assert headless["clusterIP"] == "None" and normal.get("clusterIP") != "None"
    for svc in (headless, normal):
        assert svc["selector"].items() <= pod_labels.items()
    assert {"name": "grpc", "port": 8001, "targetPort": "grpc"} in headless["ports"]
    assert {p["name"] for p in normal["ports"]} == {"http", "grpc", "metrics"}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_gateway_follows_design_and_points_at_the_headless_service(rendered, overlay):
    docs = rendered[overlay]
    c = container(docs, "rmbg-gateway", "gateway")
    args = arg_values(c)
    host, port = args["--triton"].split(":")
    assert host == "rmbg-triton-headless" and one(docs, "Service", host)["spec"]["clusterIP"] == "None"
    assert int(port) in [p["port"] for p in one(docs, "Service", host)["spec"]["ports"]]
    assert args["--host"] == "0.0.0.0" and args["--port"] == "8080" and args["--data-dir"] == "/data"
    redis_host = args["--redis"].removeprefix("redis://").split(":")[0]
    one(docs, "Service", redis_host)
    # API keys come from the Secret, mounted where --api-key-file looks.
    spec = one(docs, "Deployment", "rmbg-gateway")["spec"]["template"]["spec"]
    key_dir = str(Path(args["--api-key-file"]).parent)
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == key_dir)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    secret = one(docs, "Secret", volume["secret"]["secretName"])
    assert Path(args["--api-key-file"]).name in secret["stringData"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    gw = one(docs, "Service", "rmbg-gateway")["spec"]
    assert gw["ports"][0]["targetPort"] == "http" and c["ports"][0] == {"name": "http", "containerPort": 8080}


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_triton_scales_on_queue_time_through_the_shipped_adapter_rule(rendered, overlay):
    docs = rendered[overlay]
    hpa = one(docs, "HorizontalPodAutoscaler", "rmbg-triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rmbg-triton"}
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["pods"]["metric"]["name"] == "avg_time_queue_us"  # Triton's k8s-onprem metric
    rules = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    served = {r["name"]["as"]: r for r in rules}
    for metric in metrics:  # every custom metric the HPA reads is one the shipped rules serve
        assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
        rule = served[metric["pods"]["metric"]["name"]]
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert 'model=~"rmbg_.+"' in rule["metricsQuery"]  # per request of the ensemble
    queue = served["avg_time_queue_us"]["metricsQuery"]
    assert "rate(nv_inference_queue_duration_us" in queue and "/ clamp_min(" in queue
    assert "nv_inference_request_success" in queue
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    names = [m["pods"]["metric"]["name"] for m in metrics]
    assert names == (["avg_time_queue_us", "avg_requests_per_second"] if overlay == "cpu" else ["avg_time_queue_us"])


def test_gateway_scales_on_cpu(rendered):
    hpa = one(rendered["cpu"], "HorizontalPodAutoscaler", "rmbg-gateway")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


def test_disruption_budgets_protect_serving_pods_without_blocking_drains(rendered):
    docs = rendered["cpu"]
    for name in ("rmbg-triton", "rmbg-gateway"):
        pdb = one(docs, "PodDisruptionBudget", name)
        labels = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        floor = one(docs, "HorizontalPodAutoscaler", name)["spec"]["minReplicas"]
        assert 1 <= pdb["spec"]["minAvailable"] < floor, f"{name}: a drain could never evict a pod"


def test_service_monitors_scrape_ports_that_exist(rendered):
    docs = rendered["cpu"]
    services = [d for d in docs if d["kind"] == "Service"]
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"rmbg-triton", "rmbg-gateway"}
    for m in monitors:
        assert m["apiVersion"] == "monitoring.coreos.com/v1"
        wanted = m["spec"]["selector"]["matchLabels"].items()
        selected = [s for s in services if wanted <= s["metadata"]["labels"].items()]
        for endpoint in m["spec"]["endpoints"]:
            assert endpoint["path"] == "/metrics"
            assert any(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected), m["metadata"]
    auth = one(docs, "ServiceMonitor", "rmbg-gateway")["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert auth["key"] in one(docs, "Secret", auth["name"])["stringData"]


def test_grafana_dashboard_shows_the_scaling_signals(rendered):
    cm = one(rendered["cpu"], "ConfigMap", "rmbg-grafana-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["rmbg-dashboard.json"])
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dashboard["panels"]}
    wanted = {
        "Queue time": "nv_inference_queue_duration_us",
        "Compute time per step": "nv_inference_compute_infer_duration_us",
        "Batch size": "nv_inference_exec_count",
        "Throughput": "nv_inference_request_success",
        "GPU utilisation": "DCGM_FI_DEV_GPU_UTIL",
    }
    for title, metric in wanted.items():
        panel = next((t for t in exprs if t.startswith(title)), None)
        assert panel is not None, f"no panel {title!r}"
        assert metric in exprs[panel], f"{panel}: {exprs[panel]}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_kserve_inference_service_runs_the_same_image_and_contract(rendered):
    isvc = one(rendered["kserve"], "InferenceService", "rmbg")
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    (c,) = isvc["spec"]["predictor"]["containers"]
    assert c["image"] == container(rendered["gpu"], "rmbg-triton", "triton")["image"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["RMBG_TARGET"] == "gpu-trt" and c["args"] == ["all"]
    claim = next(v for v in isvc["spec"]["predictor"]["volumes"] if v["name"] == "models")
    one(rendered["kserve"], "PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])


def test_namespace_enforces_the_restricted_pod_security_standard(rendered):
    ns = one(rendered["cpu"], "Namespace", "rmbg")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered["cpu"] if d["kind"] != "Namespace"} == {"rmbg"}
