"""Hosted outputs on both real backends: a directory on disk and a real redis-server."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from rmbg_server.gateway.files import (
    INPUT_TYPE,
    ORPHAN_AGE_S,
    LocalFileStore,
    QuotaExceeded,
    RedisFileStore,
    StoredFile,
    open_file_store,
)


@pytest.fixture(params=["local", "redis"])
def open_store(request, tmp_path):
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return lambda: open_file_store(tmp_path, url)


def run(coro_fn):
    return asyncio.run(coro_fn())


def test_put_get_find_round_trip_across_replicas(open_store, small_jpeg):
    image_uuid = str(uuid.uuid4())

    async def main():
        a, b = open_store(), open_store()
        assert isinstance(a, LocalFileStore | RedisFileStore)
        t0 = time.time()
        stored = await a.put(image_uuid, small_jpeg, "image/jpeg", ttl_s=120)
        assert stored == StoredFile(f"{image_uuid}.jpg", "image/jpeg", len(small_jpeg), stored.expires_at)
        assert t0 + 119 <= stored.expires_at <= time.time() + 121
        got = await b.get(stored.name), await b.find(image_uuid), await b.find(image_uuid.upper())
        missing = await b.get(f"{image_uuid}.png"), await b.find(str(uuid.uuid4()))
        for s in (a, b):
            await s.close()
        return got, missing

    got, missing = run(main)
    assert got == ((small_jpeg, "image/jpeg"),) * 3
    assert missing == (None, None)


@pytest.mark.parametrize("name", [
    "../jobs.sqlite3", "x.png", "..%2Fjobs.sqlite3", "{u}.PNG", "{u}.gif", "{u}.png.json", "{U}.png",
    "{u}.png/../{u}.png", "/etc/passwd", "", ".tmp-{u}.png",
])
def test_only_the_name_form_is_served(open_store, name):
    image_uuid = str(uuid.uuid4())

    async def main():
        store = open_store()
        await store.put(image_uuid, b"\x89PNG fake but stored as is", "image/png", ttl_s=120)
        got = await store.get(name.format(u=image_uuid, U=image_uuid.upper()))
        await store.close()
        return got

    assert run(main) is None


def test_bad_put_arguments_name_what_is_accepted(open_store):
    async def main():
        store = open_store()
        with pytest.raises(ValueError, match="'image/gif' is not stored; accepted: image/png, image/jpeg, "
                                              "image/webp, application/octet-stream"):
            await store.put(str(uuid.uuid4()), b"GIF89a", "image/gif", ttl_s=60)
        with pytest.raises(ValueError, match="'../x' is not a UUID"):
            await store.put("../x", b"", "image/png", ttl_s=60)
        await store.close()

    run(main)


def test_a_file_is_gone_after_its_ttl(open_store, tmp_path):
    keep, drop = str(uuid.uuid4().hex), str(uuid.uuid4())

    async def main():
        store = open_store()
        await store.put(drop, b"RIFF....WEBP", "image/webp", ttl_s=1)
        await store.put(keep, b"RIFF....WEBP", "image/webp", ttl_s=3600)
        assert await store.get(f"{drop}.webp") == (b"RIFF....WEBP", "image/webp")
        await asyncio.sleep(1.3)
        gone = await store.get(f"{drop}.webp"), await store.find(drop)
        swept = await store.sweep()
        kept = await store.get(f"{keep}.webp")
        await store.close()
        return gone, swept, kept

    gone, swept, kept = run(main)
    assert gone == (None, None)
    assert kept == (b"RIFF....WEBP", "image/webp")
    if (tmp_path / "files").is_dir():  # local: the sweeper deleted the data and its sidecar
        assert swept == 1
        assert sorted(p.name for p in (tmp_path / "files").iterdir()) == [f"{keep}.webp", f"{keep}.webp.json"]
    else:  # Redis expired the key itself
        assert swept == 0


def test_local_debris_of_a_crash_is_never_served_and_swept(tmp_path):
    store = open_file_store(tmp_path)
    root = tmp_path / "files"
    image_uuid = str(uuid.uuid4())
    (root / f"{image_uuid}.png").write_bytes(b"written, then the process died before the sidecar")
    (root / f".tmp-{uuid.uuid4().hex}-{image_uuid}.png").write_bytes(b"half a write")
    fresh = root / f".tmp-{uuid.uuid4().hex}-x.png.json"
    fresh.write_bytes(b"{")  # a sidecar being written right now

    async def main():
        got = await store.get(f"{image_uuid}.png")
        assert await store.sweep() == 0  # young debris may still be a write in progress
        old = time.time() - ORPHAN_AGE_S - 10
        for p in root.iterdir():
            if p != fresh:
                os.utime(p, (old, old))
        swept = await store.sweep()
        return got, swept

    got, swept = run(main)
    assert got is None
    assert swept == 2
    assert list(root.iterdir()) == [fresh]


def test_redis_files_carry_their_ttl(redis_url):
    import redis

    image_uuid = str(uuid.uuid4())

    async def main():
        store = open_file_store(None, redis_url)  # type: ignore[arg-type]
        await store.put(image_uuid, b"png", "image/png", ttl_s=600)
        await store.put(image_uuid, b"jpg", "image/jpeg", ttl_s=600)  # the same uuid again: replaced
        got = await store.get(f"{image_uuid}.png"), await store.get(f"{image_uuid}.jpg")
        await store.close()
        return got

    assert run(main) == (None, (b"jpg", "image/jpeg"))
    with redis.Redis.from_url(redis_url) as client:
        assert 590 <= client.ttl(f"{{rmbg}}:file:{image_uuid}") <= 600


def test_a_tenant_finds_only_its_own_files(open_store, small_jpeg):
    out, blob = str(uuid.uuid4()), str(uuid.uuid4())

    async def main():
        a, b = open_store(), open_store()
        stored = await a.put(out, small_jpeg, "image/jpeg", ttl_s=120, tenant="tenant-a")
        await a.put(blob, small_jpeg, INPUT_TYPE, ttl_s=120, tenant="tenant-a")
        seen = (await b.find(out, "tenant-a"), await b.find(out, "tenant-b"), await b.find(out),
                await b.find(blob, "tenant-a"), await b.get(stored.name), await b.get(f"{blob}.bin"))
        await b.delete(blob)
        gone = await a.find(blob, "tenant-a")
        for s in (a, b):
            await s.close()
        return seen, gone

    (mine, other, keyless, input_blob, served, blob_served), gone = run(main)
    assert mine == (small_jpeg, "image/jpeg") and other is None and keyless is None
    assert input_blob == (small_jpeg, INPUT_TYPE) and served == (small_jpeg, "image/jpeg")
    assert blob_served == (small_jpeg, INPUT_TYPE)  # by name, for the route: which serves signed names only
    assert gone is None


def test_a_tenants_quota_holds_and_frees_at_expiry(open_store):
    async def main():
        store = open_store()
        await store.put(str(uuid.uuid4()), b"a" * 600, "image/png", ttl_s=1, tenant="t", quota_bytes=1000)
        with pytest.raises(QuotaExceeded) as info:
            await store.put(str(uuid.uuid4()), b"b" * 600, "image/png", ttl_s=60, tenant="t", quota_bytes=1000)
        await store.put(str(uuid.uuid4()), b"c" * 600, "image/png", ttl_s=60, tenant="other", quota_bytes=1000)
        used = await store.usage("t")
        await asyncio.sleep(1.3)  # the first file expired: its bytes are free again
        await store.put(str(uuid.uuid4()), b"d" * 900, "image/png", ttl_s=60, tenant="t", quota_bytes=1000)
        after = await store.usage("t")
        await store.close()
        return info.value, used, after

    error, used, after = run(main)
    assert (error.status, error.code, error.retry_after) == (429, "quotaExceeded", 60)
    assert "600 bytes; 600 more would pass its quota of 1,000 bytes" in error.message
    assert (used, after) == (600, 900)


def test_the_quota_holds_under_concurrent_puts(open_store):
    """Twenty puts at once against a quota for five: exactly five land (the check and the write are one step)."""
    async def main():
        store = open_store()
        results = await asyncio.gather(*(store.put(str(uuid.uuid4()), b"x" * 100, "image/png", ttl_s=60,
                                                   tenant="t", quota_bytes=500) for _ in range(20)),
                                       return_exceptions=True)
        usage = await store.usage("t")
        await store.close()
        return results, usage

    results, usage = run(main)
    assert sum(isinstance(r, StoredFile) for r in results) == 5 and usage == 500
    assert all(isinstance(r, QuotaExceeded) for r in results if not isinstance(r, StoredFile))


def test_replicas_share_one_signing_key(open_store):
    async def main():
        a, b = open_store(), open_store()
        keys = await a.secret(), await b.secret(), await a.secret()
        for s in (a, b):
            await s.close()
        return keys

    first, second, again = run(main)
    assert len(first) == 32 and first == second == again
