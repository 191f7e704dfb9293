"""The hostile corpus through the real server, mixed with valid requests in the same batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from rmbg_client import InvalidInputError, RmbgClient
from tests.hostile.corpus import CASES

pytestmark = pytest.mark.triton


def test_every_hostile_input_fails_alone(triton, small_jpeg):
    client = RmbgClient(triton.grpc_url)
    jobs = [(c.name, c.image, c.options, c.background, c.expect) for c in CASES]
    # a valid request after every fourth hostile one, so batches mix both
    jobs = [j for i, job in enumerate(jobs) for j in ([job] + ([("valid", small_jpeg, "{}", None, "ok")]
                                                              if i % 4 == 0 else []))]

    def run(job):
        name, image, options, background, expect = job
        try:
            return job, client.remove(image, options, background)
        except InvalidInputError as exc:
            return job, exc

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(run, jobs))
    failures = []
    for (name, _, _, _, expect), result in results:
        if expect == "ok":
            if isinstance(result, Exception):
                failures.append(f"{name}: unexpected error {result}")
        elif not isinstance(result, InvalidInputError) or expect not in str(result):
            failures.append(f"{name}: expected an error with {expect!r}, got {result!r}"[:300])
    assert not failures, "\n".join(failures)
    assert client.remove(small_jpeg).info["width"] > 0  # the server keeps serving
