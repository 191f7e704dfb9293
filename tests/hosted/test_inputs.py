"""What a hosted-API request may carry as an image: never a local file, base64 capped before decoding."""

from __future__ import annotations

import asyncio
import base64

import pytest

from rmbg_hosted.errors import ImageInputError
from rmbg_hosted.fetch import FetchPolicy
from rmbg_hosted.inputs import canonical_uuid, request_image, to_data_uri


@pytest.mark.parametrize("path", ["/proc/self/environ", "~/.bashrc", "/etc/passwd", "./tests/conftest.py",
                                  "../shared/eval/manifest.csv", "file:///etc/passwd"])
def test_a_task_image_is_never_read_from_a_local_file(path):
    """A request is someone else's data: its image is a URL, a data URI or base64, never a file."""
    with pytest.raises(ImageInputError, match="local file paths are never read|only http and https") as info:
        asyncio.run(request_image(path))
    assert "root:" not in str(info.value) and "PATH=" not in str(info.value)


def test_a_task_image_accepts_base64_and_data_uris(small_jpeg):
    b64 = base64.b64encode(small_jpeg).decode()  # a JPEG's base64 starts with "/9j/": not a path
    assert b64.startswith("/")
    assert asyncio.run(request_image(b64)) == small_jpeg
    assert asyncio.run(request_image(to_data_uri(small_jpeg, "image/jpeg"))) == small_jpeg


def test_inline_base64_is_capped_before_decoding():
    big = base64.b64encode(b"\0" * 30_000).decode()
    with pytest.raises(ImageInputError, match="over the 10,000-byte limit"):
        asyncio.run(request_image(big, FetchPolicy(max_bytes=10_000)))
    with pytest.raises(ImageInputError, match="over the 10,000-byte limit"):
        asyncio.run(request_image("data:image/png;base64," + big, FetchPolicy(max_bytes=10_000)))


def test_a_path_gets_the_same_answer_whether_or_not_the_file_exists():
    """The message must not tell a caller what is on the server's disk."""
    answers = set()
    for path in ("/etc", "/etx", "/etc/passwd", "/etc/passwx"):
        with pytest.raises(ImageInputError) as info:
            asyncio.run(request_image(path))
        answers.add((info.value.code, info.value.message))
    assert len(answers) == 1


def test_uuids_are_canonical_lower_case():
    assert canonical_uuid("CDC8C516-310A-4646-B983-9CD3EC6993E4") == "cdc8c516-310a-4646-b983-9cd3ec6993e4"
    assert canonical_uuid("cdc8c516310a4646b9839cd3ec6993e4") == "cdc8c516310a4646b9839cd3ec6993e4"
    assert canonical_uuid("not-a-uuid") is None and canonical_uuid(123) is None
