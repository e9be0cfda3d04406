"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver, which `make test-browser`
installs) loads it, uploads a photo, types two class names, presses Analyse, and sees the overlay and legend;
the screenshot is saved (to $CLIPDENSE_SCREENSHOT too, which `make test-browser` points at docs/). Every request
the browser makes must go to the loopback server: the page works offline."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the page needs the web extra: pip install 'clipdense[web]'")
pytest.importorskip("selenium", reason="the browser test drives Chromium with selenium (pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow,   # a server and a browser
              pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                 reason="headless Chromium is not installed (`make test-browser` installs Debian's "
                                        "chromium and chromium-driver, then runs this test)")]

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ready  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from clipdense.web.app import PageSettings  # noqa: E402
from clipdense.web.examples import world_examples  # noqa: E402

from web_client import running  # noqa: E402

CLASSES = "orange circle, purple cross"


@pytest.fixture()
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_upload_type_two_classes_and_see_the_overlay(browser, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    scene, _ = world_examples(1, folder=tmp_path)[0]
    photo = tmp_path / "scene.png"
    Image.open(scene).resize((384, 384), Image.NEAREST).save(photo)
    with running(PageSettings(templates="world", examples=3)) as base:
        browser.get(base + "/")
        wait = WebDriverWait(browser, 90)
        upload = wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]")))
        upload.send_keys(str(photo))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#photo [aria-label='scene.png']")))
        browser.find_element(By.CSS_SELECTOR, "#classes textarea").send_keys(CLASSES)
        browser.find_element(By.ID, "run").click()
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#overlay img")))
        wait.until(ready.presence_of_element_located((By.CSS_SELECTOR, "#legend .legend-item")))
        legend = browser.find_element(By.ID, "legend").text
        message = browser.find_element(By.ID, "message").text
        browser.execute_script("window.scrollTo(0, 0)")
        shot = tmp_path / "web-page.png"
        browser.save_screenshot(str(shot))
        urls = requested_urls(browser)
    assert "Error" not in message and "tiny-vit-t8" in message
    assert any(name in legend for name in ("orange circle", "purple cross"))
    assert Image.open(shot).size[0] >= 1000
    outside = [u for u in urls if not u.startswith((base, "data:", "blob:"))]
    assert not outside, f"the page fetched from outside the server: {outside[:5]}"
    target = os.environ.get("CLIPDENSE_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
