"""/healthz, /readyz, /metrics, /docs (OpenAPI from the typed models) and /files."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.triton


def test_health_and_readiness(gateway, triton):
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz").json()
    assert ready["status"] == "ready" and ready["endpoints"] == {triton.grpc_url: "healthy"}
    assert ready["models"] == ["birefnet", "isnet"]


def test_metrics(gateway, images, http_server):
    gateway.post("/v1", {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
                         "outputType": "base64Data", "inputs": {"image": f"{http_server.base}/source_image.jpg"}})
    gateway.post("/v1", {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "model": "bria:2@1",
                         "webhookURL": "http://10.0.0.1/hook", "outputType": "base64Data",
                         "inputs": {"image": f"{http_server.base}/source_image.jpg"}})
    gateway.post("/v1", {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()),
                         "inputs": {"image": "http://192.168.0.1/x.jpg"}})
    text = gateway.wait_for("/metrics", lambda r: "rmbg_gateway_webhook_failures_total 1.0" in r.text).text
    assert 'rmbg_gateway_requests_total{method="POST",route="/v1",status="200"}' in text
    assert 'rmbg_gateway_requests_total{method="POST",route="/v1",status="400"}' in text
    assert 'rmbg_gateway_request_seconds_bucket{le="0.5",method="POST",route="/v1"}' in text
    assert 'rmbg_gateway_jobs{status="queued"}' in text
    assert 'rmbg_gateway_fetch_failures_total{reason="forbidden_address"}' in text
    assert "rmbg_gateway_webhook_failures_total 1.0" in text  # the private webhook address was refused
    assert 'rmbg_gateway_triton_seconds_count{model="birefnet"}' in text
    assert 'rmbg_gateway_triton_endpoints{state="healthy"} 1.0' in text


def test_openapi_documents_every_route(gateway):
    assert "swagger" in gateway.get("/docs").text.lower()
    schema = gateway.get("/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/v1", "/fal-ai/bria/background/remove", "/fal-ai/bria/background/replace",
            "/queue/fal-ai/bria/background/remove", "/queue/fal-ai/bria/background/replace",
            "/queue/fal-ai/bria/background/remove/requests/{request_id}/status",
            "/queue/fal-ai/bria/background/remove/requests/{request_id}",
            "/queue/fal-ai/bria/background/remove/requests/{request_id}/cancel",
            "/api/v1/ie/requestqueue/apikey/requests", "/api/v1/ie/requestqueue/apikey/requests/{request_id}",
            "/files/{expires}/{signature}/{name}", "/healthz", "/readyz", "/metrics"} <= paths
    body = schema["paths"]["/v1"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "#/components/schemas/RemoveBackgroundTask" in str(body)
    task = schema["components"]["schemas"]["RemoveBackgroundTask"]["properties"]
    assert {"taskUUID", "providerSettings", "webhookURL", "deliveryMethod", "ttl", "uploadEndpoint"} <= set(task)
    assert "FalRemoveRequest" in schema["components"]["schemas"]


@pytest.mark.parametrize("name", ["nope.png", f"{uuid.uuid4()}.png", f"{uuid.uuid4()}.exe", "..%2F..%2Fetc%2Fpasswd"])
def test_files_answer_404_for_anything_not_stored(gateway, name):
    assert gateway.get(f"/files/{name}").status_code == 404
    assert gateway.get(f"/files/9999999999/{'f' * 64}/{name}").status_code == 404  # a forged signature
