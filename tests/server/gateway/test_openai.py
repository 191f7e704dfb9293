"""OpenAI-style images, through the real ``openai`` Python SDK pointed at the gateway (``base_url``)."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from tests.server.gateway.conftest import API_KEY, opened

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def keyed(gateway_factory):
    return gateway_factory("--api-key", API_KEY)


def client(gw, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def test_images_edit_as_the_sdk_sends_it(keyed, small_jpeg):
    result = client(keyed).images.edit(image=("photo.jpg", small_jpeg, "image/jpeg"), prompt="remove the background",
                                       model="briaai/RMBG-1.4")
    out = opened(base64.b64decode(result.data[0].b64_json))
    assert (out.format, out.mode, out.size) == ("PNG", "RGBA", opened(small_jpeg).size)
    assert result.created > 0
    opaque = client(keyed).images.edit(image=("photo.jpg", small_jpeg, "image/jpeg"), prompt="x", model="isnet",
                                       background="opaque", output_format="jpeg", output_compression=100)
    jpg = opened(base64.b64decode(opaque.data[0].b64_json))
    assert jpg.format == "JPEG" and np.asarray(jpg)[2, 2].min() >= 240  # on white
    hosted = client(keyed).images.edit(image=("photo.jpg", small_jpeg, "image/jpeg"), prompt="x",
                                       response_format="url", extra_body={"model": "runware:109@1"})
    assert opened(httpx.get(hosted.data[0].url).content).mode == "RGBA"  # the URL needs no key


def test_models_lists_every_name_of_the_loaded_models(keyed):
    ids = {m.id for m in client(keyed).models.list()}
    assert {"isnet", "briaai/RMBG-1.4", "runware:109@1"} <= ids


def test_errors_are_the_sdks_own_typed_errors(keyed, small_jpeg):
    with pytest.raises(openai.AuthenticationError) as bad_key:
        client(keyed, "wrong-key-00000000000000000").images.edit(image=("p.jpg", small_jpeg), prompt="x")
    assert bad_key.value.status_code == 401 and bad_key.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as bad:
        client(keyed).images.edit(image=("p.jpg", small_jpeg), prompt="x", n=2)
    assert bad.value.body["param"] == "n" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as unknown:
        client(keyed).images.edit(image=("p.jpg", small_jpeg), prompt="x", model="dall-e-2")
    assert unknown.value.body["param"] == "model" and unknown.value.body["code"] == "unsupportedModel"
    with pytest.raises(openai.BadRequestError) as not_image:
        client(keyed).images.edit(image=("p.jpg", b"not an image"), prompt="x")
    assert not_image.value.body["param"] == "image"
