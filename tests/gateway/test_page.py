"""The gateway's page in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium): draw a digit
with pointer events, type a review, read the labels, bars and round-trip times the page shows, and take the
screenshot the README shows (into $MODELPORT_SCREENSHOT_DIR when set, e.g. docs/, else the test's tmp dir).

Without the browser the test fails, naming the install: `make test` installs it first (env/system.py), and a skip would
hide a broken page."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1040,1000", "--force-device-scale-factor=1")
FOUR = [[(170, 40), (70, 170)], [(70, 170), (222, 170)], [(170, 100), (170, 242)]]  # canvas pixels, 280 x 280


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"needs {CHROMIUM} and {CHROMEDRIVER}: `make system` (or apt-get install chromium chromium-driver) "
                    "installs them", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not try to download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER),
                                                               log_output=str(tmp_path / "chromedriver.log")))
    try:
        yield driver
    finally:
        driver.quit()


def draw(driver, canvas, strokes) -> None:
    """Each stroke: press at its first point, move through the others in small steps (pointermove), release."""
    from selenium.webdriver.common.action_chains import ActionChains

    size = canvas.size
    for stroke in strokes:
        chain = ActionChains(driver, duration=10)
        (x, y) = stroke[0]
        chain.move_to_element_with_offset(canvas, x - size["width"] // 2, y - size["height"] // 2).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            steps = 12
            for i in range(steps):
                dx = round(x0 + (x1 - x0) * (i + 1) / steps) - round(x0 + (x1 - x0) * i / steps)
                dy = round(y0 + (y1 - y0) * (i + 1) / steps) - round(y0 + (y1 - y0) * i / steps)
                chain.move_by_offset(dx, dy)
        chain.release().perform()


def result(driver, panel: str) -> dict:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, f"{panel}-result")
    bars = box.find_elements(By.CSS_SELECTOR, ".bar")
    return {"label": box.find_element(By.CSS_SELECTOR, ".label").text,
            "bars": {b.get_attribute("data-label"): b.find_element(By.CSS_SELECTOR, ".value").text for b in bars},
            "rtt": box.find_element(By.CSS_SELECTOR, ".rtt").text}


def test_the_page_classifies_a_drawn_digit_and_a_typed_review_and_shows_bars_and_round_trip(browser, gateway,
                                                                                             tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(gateway.url + "/")
    wait = WebDriverWait(browser, 30)
    browser.find_element(By.ID, "api-key").send_keys(gateway.key + Keys.TAB)
    wait.until(lambda d: "models:" in d.find_element(By.ID, "status").text)

    draw(browser, browser.find_element(By.ID, "canvas"), FOUR)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image-result .label"))
    digit = result(browser, "image")
    assert digit["label"] == "4", digit
    assert list(digit["bars"]) == [str(i) for i in range(10)] and digit["rtt"].startswith("round trip ")

    browser.find_element(By.ID, "text").send_keys("a moving, beautifully acted film")
    browser.find_element(By.ID, "classify-text").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#text-result .label"))
    review = result(browser, "text")
    assert review["label"] == "positive" and list(review["bars"]) == ["negative", "positive"], review

    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) == {gateway.url}, origins  # nothing from a CDN or anywhere else
    # the one error the console may show: the model list asked for before the key was typed
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/v1/models - " in m and "401" in m for m in errors), errors

    target = Path(os.environ.get("MODELPORT_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(target / "gateway-page.png"))
    assert (target / "gateway-page.png").stat().st_size > 10_000


def test_an_image_dropped_on_the_canvas_is_classified_as_the_api_classifies_it(browser, gateway):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sample = sorted((Path(__file__).resolve().parents[2] / "models" / "digits" / "samples").glob("*.png"))[3]
    encoded = base64.b64encode(sample.read_bytes()).decode()
    browser.get(gateway.url + "/")
    browser.find_element(By.ID, "api-key").send_keys(gateway.key)
    # WebDriver cannot drag a file from the desktop: the page gets the drop event a browser would dispatch
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "digit.png", { type: "image/png" }));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: files, bubbles: true }));
    """, encoded)
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#image-result .label"))
    direct = gateway.predict("digits_image", {"inputs": [{"b64": encoded}]}).json()["predictions"][0]
    shown = result(browser, "image")
    assert shown["label"] == direct["label"]
    assert shown["bars"][direct["label"]] == f"{100 * direct['score']:.1f} %"
