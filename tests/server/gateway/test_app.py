"""The gateway's JSON renderer: long strings are spliced in unescaped only when JSON needs no escape."""

from __future__ import annotations

import base64
import json
import os

import pytest

from rmbg_server.gateway.responses import BlobJSONResponse

B64 = base64.b64encode(os.urandom(9000)).decode()


@pytest.mark.parametrize("value", [
    B64,                                   # the case it exists for: spliced verbatim
    B64[:6000] + '"' + B64[6000:],         # a quote must be escaped
    B64[:6000] + "\\" + B64[6000:],        # so must a backslash
    B64[:6000] + "\n\x01" + B64[6000:],    # and control characters
    B64[:6000] + "\x7f" + B64[6000:],      # DEL is legal in JSON as is
    B64[:6000] + "é☃" + B64[6000:],        # non-ASCII goes through json.dumps
    "short \"quoted\" text",
])
def test_every_string_round_trips_through_the_rendered_json(value):
    content = {"data": [{"imageBase64Data": value, "n": 1, "nested": [value, None]}], "errors": []}
    body = BlobJSONResponse(content).body
    assert json.loads(body) == content


def test_a_base64_image_is_copied_in_as_it_is():
    body = BlobJSONResponse({"data": [{"imageBase64Data": B64}]}).body
    assert body == b'{"data":[{"imageBase64Data":"' + B64.encode() + b'"}]}'
