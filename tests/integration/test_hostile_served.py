"""The hostile corpus through the real server, mixed with valid requests in the same batches."""

from __future__ import annotations

import pytest

from rmbg_client import RmbgClient
from tests.hostile.corpus import CASES, mismatches, run_mixed

pytestmark = pytest.mark.triton


def test_every_hostile_input_fails_alone(triton, small_jpeg):
    client = RmbgClient(triton.grpc_url)
    results = run_mixed(client, CASES, small_jpeg)
    assert len(results) > len(CASES)
    failures = mismatches(results)
    assert not failures, "\n".join(failures)
    assert client.remove(small_jpeg).info["width"] > 0  # the server keeps serving
