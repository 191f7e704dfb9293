"""The playground at the gateway's ``/`` in a real headless Chromium (Debian's chromium + chromium-driver).

The page uploads a real eval photo, posts the task to the gateway's own ``POST /v1``, and shows the
result beside the original. The screenshot is written to the test's tmp dir, and to
``docs/playground.png`` with ``RMBG_UPDATE_DOCS=1``.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from rmbg_backend.shape import crop_box, subject_box
from tests.conftest import ROOT

pytestmark = pytest.mark.triton
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1400,1000")


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("the playground needs a real browser: apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    drv = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield drv
    drv.quit()


@pytest.fixture
def page(browser, gateway):
    browser.get(f"{gateway.url}/")
    return browser


def set_value(drv, element_id: str, value: str) -> None:
    element = drv.find_element("id", element_id)
    element.clear()
    element.send_keys(value)


def submit_and_wait(drv, timeout: float = 300.0) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.find_element("id", "run").click()
    WebDriverWait(drv, timeout).until(
        lambda d: d.find_element("id", "status").text.startswith(("Done", "Failed")))
    return drv.find_element("id", "status").text


def from_data_uri(uri: str) -> Image.Image:
    assert uri.startswith("data:image/"), uri[:40]
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    im.load()
    return im


def downloaded(drv) -> Image.Image:
    return from_data_uri(drv.find_element("id", "download").get_attribute("href"))


def before(drv) -> Image.Image:
    return from_data_uri(drv.find_element("id", "before").get_attribute("src"))


def wait_until(drv, script: str, timeout: float = 10.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout).until(lambda d: d.execute_script(script))


def in_view(drv, element_id: str) -> bool:
    return drv.execute_script(
        "const r = document.getElementById(arguments[0]).getBoundingClientRect();"
        "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight;", element_id)


def task_result(gateway, photo: Path, **fields) -> Image.Image:
    """What the gateway answers for a task on ``photo``, straight over HTTP (the test's own reference)."""
    task = {"taskType": "removeBackground", "taskUUID": str(uuid.uuid4()), "outputType": "dataURI",
            "inputs": {"image": "data:image/jpeg;base64," + base64.b64encode(photo.read_bytes()).decode()}, **fields}
    response = httpx.post(f"{gateway.url}/v1", json=[task], timeout=300)
    assert response.status_code == 200, response.text
    return from_data_uri(response.json()["data"][0]["imageDataURI"])


def rendered(drv) -> tuple[int, int]:
    return tuple(drv.execute_script(
        "const i = document.getElementById('result'); return i.complete ? [i.naturalWidth, i.naturalHeight] : [0, 0];"))


def test_upload_with_options_renders_the_result_and_offers_a_download(page, pairs, tmp_path):
    photo = next(p for p in pairs if p.id == "grabcut_teddy")
    page.find_element("id", "file").send_keys(str(photo.image))
    for box in ("refineForeground", "shadow", "useColour"):
        page.find_element("id", box).click()
    page.execute_script("document.getElementById('colour').value = '#dfe7f1';")
    page.find_element("id", "outputFormat").send_keys("AUTO")
    status = submit_and_wait(page)
    assert status.startswith("Done"), page.find_element("id", "error").text
    assert rendered(page) == (photo.width, photo.height)
    result = downloaded(page)  # opaque on a colour: AUTO chose JPG
    assert result.format == "JPEG" and result.size == (photo.width, photo.height)
    assert page.find_element("id", "download").get_attribute("download") == "rmbg-result.jpg"
    assert not page.find_element("id", "error").is_displayed()
    page.execute_script("const s = document.getElementById('slider'); s.value = 45;"
                        "s.dispatchEvent(new Event('input')); window.scrollTo(0, 0);")
    shot = tmp_path / "playground.png"
    page.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    if os.environ.get("RMBG_UPDATE_DOCS") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)  # a 256-colour PNG keeps the committed file small
        Image.open(shot).convert("RGB").quantize(256).save(ROOT / "docs" / "playground.png", optimize=True)


def test_canvas_options_reach_the_gateway(page, pairs):
    photo = next(p for p in pairs if p.id == "ecssd_0049")
    page.find_element("id", "file").send_keys(str(photo.image))
    page.find_element("id", "crop").click()
    set_value(page, "cropMargin", "10%")
    set_value(page, "outputWidth", "300")
    set_value(page, "outputHeight", "200")
    set_value(page, "scale", "0.8")
    page.find_element("id", "position").send_keys("center")
    assert submit_and_wait(page).startswith("Done"), page.find_element("id", "error").text
    result = downloaded(page)
    assert result.format == "PNG" and result.mode == "RGBA" and result.size == (300, 200)
    assert rendered(page) == (300, 200)


def test_a_bad_option_is_shown_with_its_parameter(page, pairs):
    page.find_element("id", "file").send_keys(str(next(p for p in pairs if p.id == "ecssd_0039").image))
    set_value(page, "scale", "3")
    assert submit_and_wait(page).startswith("Failed")
    error = page.find_element("id", "error")
    assert error.is_displayed() and error.text.count("settings.scale") == 1 and "0..1" in error.text, error.text
    assert not page.find_element("id", "download").is_displayed()


def test_playground_files_are_served(gateway):
    assert "text/html" in gateway.get("/").headers["content-type"]
    for name in ("playground.js", "rawpng.js", "playground.css", "favicon.svg"):
        response = gateway.get(f"/static/{name}")
        assert response.status_code == 200 and response.content == (
            ROOT / "server" / "rmbg_server" / "gateway" / "static" / name).read_bytes()

    assert "image/svg+xml" in gateway.get("/static/favicon.svg").headers["content-type"]


def test_the_page_has_a_favicon_that_loads(page):
    href = page.execute_script("return document.querySelector('link[rel=icon]').href;")
    assert href.endswith("/static/favicon.svg")
    status = page.execute_async_script("fetch(arguments[0]).then(r => arguments[1](r.status));", href)
    assert status == 200


def test_download_is_hidden_until_there_is_a_result(page, pairs):
    download = page.find_element("id", "download")
    assert not download.is_displayed()
    page.find_element("id", "file").send_keys(str(next(p for p in pairs if p.id == "ecssd_0039").image))
    assert not download.is_displayed()
    assert submit_and_wait(page).startswith("Done"), page.find_element("id", "error").text
    assert download.is_displayed()
    page.find_element("id", "file").send_keys(str(next(p for p in pairs if p.id == "ecssd_0049").image))
    assert not download.is_displayed()  # a new input: the old result is gone


def test_choosing_a_file_shows_it_at_once(page, pairs):
    photo = next(p for p in pairs if p.id == "grabcut_teddy")
    assert not page.find_element("id", "compare").is_displayed()
    page.find_element("id", "file").send_keys(str(photo.image))
    width = wait_until(page, "const i = document.getElementById('before'); return i.complete && i.naturalWidth;")
    assert width == photo.width and page.find_element("id", "before").is_displayed()
    assert not page.find_element("id", "result").is_displayed() and not page.find_element("id", "slider").is_displayed()
    assert page.find_element("id", "status").text == "Choose an image."  # nothing was sent


@pytest.mark.parametrize("size", [(1400, 1000), (1280, 720)])
def test_the_action_is_in_view_without_scrolling(browser, gateway, size):
    browser.set_window_size(*size)
    try:
        browser.get(f"{gateway.url}/")
        assert browser.execute_script("return window.scrollY;") == 0
        assert in_view(browser, "run")
        assert browser.execute_script("return document.getElementById('form').scrollHeight;") > size[1] / 2
        browser.execute_script("document.getElementById('shadowOffsetY').scrollIntoView();")
        assert in_view(browser, "shadowOffsetY") and in_view(browser, "run")  # the action stays at hand
    finally:
        browser.set_window_size(1400, 1000)


def test_every_row_keeps_its_fields_on_one_line(page):
    tops = page.execute_script(
        "return [...document.querySelectorAll('.row')].map(r => [...r.children].map(c => c.offsetTop));")
    assert len(tops) >= 5
    for row in tops:
        assert len(set(row)) == 1, tops
    offsets = [page.find_element("id", i).location["y"] for i in ("shadowOffsetX", "shadowOffsetY")]
    assert offsets[0] == offsets[1]


def test_crop_compares_the_result_with_the_same_crop_of_the_input(page, gateway, pairs):
    photo = next(p for p in pairs if p.id == "ecssd_0049")
    page.find_element("id", "file").send_keys(str(photo.image))
    page.find_element("id", "crop").click()
    set_value(page, "cropMargin", "5%")
    page.find_element("id", "useColour").click()  # a coloured result: its "before" needs its own request
    assert submit_and_wait(page).startswith("Done"), page.find_element("id", "error").text
    result, shown = downloaded(page), before(page)
    mask = np.asarray(task_result(gateway, photo.image, settings={"returnOnlyMask": True}))
    box = crop_box(subject_box(mask), "5%", mask.shape[1], mask.shape[0])
    assert result.size == shown.size == (box.width, box.height) != (photo.width, photo.height)
    original = np.asarray(Image.open(photo.image).convert("RGB"))
    expected = original[box.y0:box.y1, box.x0:box.x1]
    assert np.array_equal(np.asarray(shown.convert("RGB")), expected)  # the input's own pixels, framed alike
    assert np.asarray(shown)[..., 3].min() == 255


def test_a_canvas_compares_the_result_with_the_input_placed_alike(page, gateway, pairs):
    photo = next(p for p in pairs if p.id == "ecssd_0049")
    page.find_element("id", "file").send_keys(str(photo.image))
    set_value(page, "outputWidth", "300")
    set_value(page, "outputHeight", "200")
    set_value(page, "scale", "0.5")
    page.find_element("id", "position").send_keys("original")
    assert submit_and_wait(page).startswith("Done"), page.find_element("id", "error").text
    result, shown = downloaded(page), before(page)
    assert result.size == shown.size == (300, 200)
    framed = np.asarray(task_result(gateway, photo.image, settings={"outputSize": [300, 200], "scale": 0.5,
                                                              "position": "original"}))
    placed = framed.any(axis=2)  # the canvas around the placed input stays empty
    assert 0 < placed.mean() < 1
    shown = np.asarray(shown)
    assert np.array_equal(shown[placed][:, :3], framed[placed][:, :3]) and (shown[placed][:, 3] == 255).all()
    assert (shown[~placed][:, 3] == 0).all()
    assert np.array_equal(np.asarray(result), framed)  # a transparent PNG result is its own framing


def test_high_quality_checkbox_sets_the_option(page):
    assert "highQuality" not in page.execute_script("return buildSettings();")
    page.find_element("id", "highQuality").click()
    assert page.execute_script("return buildSettings();")["highQuality"] is True


def test_docs_render_offline_from_the_gateways_own_assets(browser, gateway):
    """/docs is Swagger UI from static/swagger-ui (vendored): the routes show with no CDN reachable."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{gateway.url}/docs")
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements("css selector", ".opblock")) > 10)
    paths = {e.text for e in browser.find_elements("css selector", ".opblock-summary-path")}
    assert {"/v1", "/fal-ai/bria/background/remove", "/v1.0/removebg", "/v1/images/edits"} <= paths
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(url.startswith(gateway.url) for url in loaded), loaded
