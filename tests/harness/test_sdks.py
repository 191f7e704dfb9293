"""The SDK harness itself: pinned installs are reused, and an SDK process cannot leave this machine.

The real-SDK tests (``tests/server/gateway/test_sdk_*.py``) promise that no SDK reaches its vendor;
these tests show the guard that holds the promise refuses a public name in both runtimes, answers
the mapped test names with 127.0.0.1, and still lets loopback through.
"""

from __future__ import annotations

import pytest

from tests.harness.sdks import ALL, FAL_CLIENT, FAL_JS

PY_PROBE = """
import json, os, socket
out = {}
for name in json.loads(os.environ["RMBG_ARGS"])["names"]:
    try:
        out[name] = sorted({a[4][0] for a in socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)})
    except OSError as e:
        out[name] = "refused: " + str(e)
print(json.dumps(out))
"""

JS_PROBE = """
import dns from "node:dns";
const out = {};
for (const name of JSON.parse(process.env.RMBG_ARGS).names) {
  try {
    out[name] = [(await dns.promises.lookup(name)).address];
  } catch (e) {
    out[name] = "refused: " + e.message;
  }
}
// fetch goes through the same lookup: a vendor's host is refused before any packet leaves
try {
  await fetch("https://rest.fal.ai/");
  out.fetch = "reached";
} catch (e) {
  out.fetch = "refused: " + (e.cause?.message ?? e.message);
}
console.log(JSON.stringify(out));
"""

NAMES = ["schemas.runware.ai", "queue.gw.test", "localhost", "127.0.0.1"]


def test_every_sdk_is_pinned_and_has_its_own_home():
    homes = {sdk.home for sdk in ALL}
    assert len(homes) == len(ALL)
    for sdk in ALL:
        assert sdk.version in sdk.home.name and sdk.version in sdk.requirement


@pytest.mark.slow
def test_a_python_sdk_process_resolves_loopback_only():
    out = FAL_CLIENT.run(PY_PROBE, args={"names": NAMES}, hosts=["queue.gw.test"])
    assert out["schemas.runware.ai"].startswith("refused: ") and "loopback" in out["schemas.runware.ai"]
    assert out["queue.gw.test"] == ["127.0.0.1"] and out["127.0.0.1"] == ["127.0.0.1"]
    assert "127.0.0.1" in out["localhost"] or "::1" in out["localhost"]


@pytest.mark.slow
def test_a_node_sdk_process_resolves_loopback_only():
    out = FAL_JS.run(JS_PROBE, args={"names": NAMES}, hosts=["queue.gw.test"])
    assert out["schemas.runware.ai"].startswith("refused: ") and "loopback" in out["schemas.runware.ai"]
    assert out["queue.gw.test"] == ["127.0.0.1"] and out["127.0.0.1"] == ["127.0.0.1"]
    assert out["fetch"].startswith("refused: ") and "loopback" in out["fetch"], out["fetch"]
