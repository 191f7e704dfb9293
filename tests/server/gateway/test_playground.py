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

import pytest
from PIL import Image

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


def downloaded(drv) -> Image.Image:
    href = drv.find_element("id", "download").get_attribute("href")
    assert href.startswith("data:image/")
    im = Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1])))
    im.load()
    return im


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
    assert error.is_displayed() and "settings.scale" in error.text and "0..1" in error.text


def test_playground_files_are_served(gateway):
    assert "text/html" in gateway.get("/").headers["content-type"]
    for name in ("playground.js", "playground.css"):
        response = gateway.get(f"/static/{name}")
        assert response.status_code == 200 and response.content == (
            ROOT / "server" / "rmbg_server" / "gateway" / "static" / name).read_bytes()
