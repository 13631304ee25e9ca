"""The page of ``edgecv serve`` in a real headless browser (Debian's chromium and chromium-driver, driven by
Selenium): it loads, lists every stream with its figures, shows a live image that changes between two
screenshots, and follows the streams as they come and go, without a reload.

``.ci/run`` installs chromium and chromium-driver and sets EDGECV_CI=1, so that in CI a missing browser fails
instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest

from tests.edgecv.pipeline.test_stream import _free_port
from tests.edgecv.service.test_serve import Served, get_json, write_config

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if (CHROMIUM is None or DRIVER is None) and os.environ.get("EDGECV_CI"):
    pytest.fail("chromium or chromedriver is missing: .ci/run installs Debian's chromium and chromium-driver",
                pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs chromium and chromium-driver (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, what: str, timeout: float = 30.0):
    """Until the page's ``script`` (JavaScript returning a value) returns something truthy."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"the page never showed {what} within {timeout:.0f} s (last: {value!r})")


def image_of(driver, stream_id: str) -> np.ndarray:
    """A screenshot of the stream's live image, decoded."""
    element = driver.find_element("css selector", f"#stream-{stream_id} img")
    png = element.screenshot_as_png
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def test_the_page_shows_live_streams_and_their_figures(browser, tmp_path):
    from tests.edgecv.detection.test_detector import make_fake_detector, write_fake_spec

    fake = {"model": make_fake_detector(tmp_path / "fake.onnx"), "spec": write_fake_spec(tmp_path / "fake.yaml")}
    port = _free_port()
    config = write_config(tmp_path / "serve.yaml", port, fake, [
        {"id": "left", "source": "synthetic:frames=0,size=160x120,fps=15", "lines": ["mid=0,60,160,60"]},
        {"id": "right", "source": "synthetic:frames=0,size=160x120,fps=15,seed=3"},
    ])
    s = Served(config, port)
    try:
        browser.get(s.url + "/")
        wait_for(browser, "return document.querySelectorAll('.stream').length === 2", "two streams")
        # every stream's figures, as the API gives them
        frames = wait_for(browser, """
            const rows = [...document.querySelectorAll('#stream-left tr')];
            const get = (k) => rows.find(r => r.dataset.key === k)?.cells[1].textContent;
            return get('frames') > 0 && get('model') === 'fake.onnx' && get('tracks now') === '1' ? get('frames') : null;
        """, "the left stream's figures")
        assert int(frames) > 0
        state = browser.execute_script("return document.querySelector('#stream-right .state').textContent")
        assert state == "running"
        # the live image loads, and changes: the generated scene moves
        wait_for(browser, "const i = document.querySelector('#stream-left img'); return i.complete && i.naturalWidth === 160",
                 "the live image")
        first = image_of(browser, "left")
        time.sleep(1.5)
        second = image_of(browser, "left")
        assert first.shape == second.shape and np.abs(first.astype(int) - second).mean() > 0.5
        # events listed, and a stream removed through the API leaves the page without a reload
        wait_for(browser, "return document.querySelectorAll('#event-list li').length > 0", "recent events")
        assert get_json(s.url + "/api/streams/right", method="DELETE")[0] == 200
        wait_for(browser, "return document.querySelectorAll('.stream').length === 1", "the removed stream gone")
        assert browser.execute_script("return document.querySelector('#stream-right')") is None
    finally:
        s.close()
