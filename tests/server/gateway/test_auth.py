"""Key loading, header parsing, constant-time matching and the token bucket (no server needed)."""

from __future__ import annotations

import pytest

from rmbg_server.gateway.auth import KeyRing, check_bind, load_keys, presented_key

K1, K2, K3 = "k1-" + "a" * 20, "k2-" + "b" * 20, "k3-" + "c" * 20


def test_keys_from_flags_files_and_environment(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# comment\n{K2}\n\n  {K1}  \n")
    assert load_keys([K1], [path], env=f"{K3}, ,{K1}") == (K1, K2, K3)
    with pytest.raises(ValueError, match="shorter than 16"):
        load_keys(["short"], env="")
    with pytest.raises(ValueError, match="--api-key-file"):
        load_keys([], [tmp_path / "missing"], env="")


@pytest.mark.parametrize(("header", "key"), [(f"Bearer {K1}", K1), (f"Key {K1}", K1), (f"bearer  {K1} ", K1),
                                             (K1, None), (f"Basic {K1}", None), ("Bearer ", None), (None, None)])
def test_presented_key(header, key):
    assert presented_key(header) == key


def test_identify_and_buckets():
    ring = KeyRing((K1, K2), rate_per_s=2.0, burst=3)
    a, b = ring.identify(f"Bearer {K1}"), ring.identify(f"Key {K2}")
    assert a and b and a != b and K1 not in a
    assert ring.identify(f"Bearer {K3}") is None and ring.identify(None) is None
    assert [ring.take(a, now=100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert ring.take(a, now=100.0) == pytest.approx(0.5)   # empty: one token per 0.5 s
    assert ring.take(b, now=100.0) == 0.0                  # each key has its own bucket
    assert ring.take(a, now=100.5) == 0.0                  # refilled
    assert ring.take(a, now=110.0) == 0.0 and ring.take(a, now=110.0) == 0.0  # capped at the burst
    assert ring.take(a, now=110.0) == 0.0 and ring.take(a, now=110.0) > 0


def test_bind_rules():
    check_bind("127.0.0.1", ())
    check_bind("::1", ())
    check_bind("localhost", ())
    check_bind("0.0.0.0", (K1,))
    for host in ("0.0.0.0", "10.1.2.3", "::"):
        with pytest.raises(ValueError, match="without API keys"):
            check_bind(host, ())
