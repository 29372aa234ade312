"""The gateway's page in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium): pick a model,
draw a digit with pointer events or type a review, read the labels, bars, round-trip time and explanation the page
shows. A model a user adds through models.toml is tried in test_page_any_model.py.

Without the browser the test fails, naming the install: `make test` installs it first (env/system.py), and a skip would
hide a broken page."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1120,1400", "--force-device-scale-factor=1")
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


def result(driver) -> dict:
    """The labelled output the page shows: its label, each class's bar value, the round trip."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "result")
    bars = box.find_elements(By.CSS_SELECTOR, ".bar")
    return {"label": box.find_element(By.CSS_SELECTOR, ".label").text,
            "bars": {b.get_attribute("data-label"): b.find_element(By.CSS_SELECTOR, ".value").text for b in bars},
            "meta": box.find_element(By.CSS_SELECTOR, ".meta").text}


def open_page(driver, gateway, model: str):
    """The page with the key typed in and `model` chosen; returns a waiter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(gateway.url + "/")
    wait = WebDriverWait(driver, 60)
    key = driver.find_element(By.ID, "api-key")
    key.clear()  # the page keeps the last key in localStorage
    key.send_keys(gateway.key + Keys.TAB)
    wait.until(lambda d: " model" in d.find_element(By.ID, "status").text)
    Select(driver.find_element(By.ID, "model")).select_by_visible_text(model)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#form fieldset"))
    return wait


def explanation(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "explanation").get_attribute("data-method") or ""


def test_a_drawn_digit_is_classified_and_its_heatmap_drawn(browser, gateway):
    from selenium.webdriver.common.by import By

    wait = open_page(browser, gateway, "digits_image")
    assert browser.find_element(By.CSS_SELECTOR, "#form fieldset").get_attribute("data-input") == "image_bytes"
    draw(browser, browser.find_element(By.CSS_SELECTOR, "#form canvas.draw"), FOUR)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result .label"))
    digit = result(browser)
    assert digit["label"] == "4", digit
    assert list(digit["bars"]) == [str(i) for i in range(10)] and digit["meta"].startswith("round trip ")
    wait.until(lambda d: explanation(d) == "occlusion")
    heat = browser.find_element(By.CSS_SELECTOR, "#explanation canvas.heatmap")
    # the heatmap is drawn: its pixels are not all one colour
    distinct = browser.execute_script("""
        const data = arguments[0].getContext("2d").getImageData(0, 0, 224, 224).data;
        return new Set(Array.from({length: data.length / 4}, (_, i) => data[4 * i] * 65536 + data[4 * i + 1] * 256
                                                                         + data[4 * i + 2])).size;""", heat)
    assert distinct > 10, distinct
    assert browser.find_element(By.ID, "explain-label").get_attribute("value") == "4"
    assert "on the pixels digits gets" in browser.find_element(By.CSS_SELECTOR, "#explanation .meta").text

    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) == {gateway.url}, origins  # nothing from a CDN or anywhere else
    # the one error the console may show: the model list asked for before the key was typed
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert all("/v1/forms - " in m and "401" in m for m in errors), errors


def test_a_typed_review_is_classified_and_its_words_highlighted(browser, gateway):
    from selenium.webdriver.common.by import By

    wait = open_page(browser, gateway, "sentiment")
    area = browser.find_element(By.CSS_SELECTOR, "#form textarea")
    assert area.get_attribute("value"), "the text box holds an example from the model's samples"
    area.clear()
    area.send_keys("the acting was terrible")
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: explanation(d) == "leave-one-out")
    review = result(browser)
    assert review["label"] == "negative" and list(review["bars"]) == ["negative", "positive"], review
    words = {w.text: float(w.get_attribute("data-value"))
             for w in browser.find_elements(By.CSS_SELECTOR, "#explanation .word")}
    assert list(words) == ["the", "acting", "was", "terrible"] and max(words, key=words.get) == "terrible", words
    assert "pro" in browser.find_element(By.XPATH, "//span[text()='terrible']").get_attribute("class")


def test_a_numeric_image_model_gets_a_drawing_pad_and_a_token_model_a_json_box(browser, gateway):
    from selenium.webdriver.common.by import By

    wait = open_page(browser, gateway, "digits")
    draw(browser, browser.find_element(By.CSS_SELECTOR, "#form canvas.draw"), FOUR)
    wait.until(lambda d: explanation(d) == "occlusion")
    sent = browser.execute_async_script("current.read().then(arguments[arguments.length - 1])")
    assert np.array(sent["image"]).shape == (1, 8, 8, 1) and np.max(sent["image"]) > 100  # pixels 0..255
    direct = gateway.predict("digits", {"inputs": sent}).json()["predictions"][0]
    assert result(browser)["label"] == direct["label"]
    open_page(browser, gateway, "sentiment_classifier")
    box = browser.find_element(By.CSS_SELECTOR, "#form textarea.json")
    assert len(json.loads(box.get_attribute("value"))) == 64  # an example row of token ids from the held-out data
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: explanation(d) == "kernel-shap")
    bars = browser.find_elements(By.CSS_SELECTOR, "#explanation .feature")
    assert 0 < len(bars) <= 16 and bars[0].get_attribute("data-feature").startswith("input_ids[")


def test_an_image_dropped_on_the_pad_is_classified_as_the_api_classifies_it(browser, gateway):
    from selenium.webdriver.common.by import By

    sample = sorted((Path(__file__).resolve().parents[2] / "models" / "digits" / "samples").glob("*.png"))[3]
    encoded = base64.b64encode(sample.read_bytes()).decode()
    wait = open_page(browser, gateway, "digits_image")
    # WebDriver cannot drag a file from the desktop: the page gets the drop event a browser would dispatch
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));
        const files = new DataTransfer();
        files.items.add(new File([bytes], "digit.png", { type: "image/png" }));
        document.querySelector("#form .drop").dispatchEvent(new DragEvent("drop", { dataTransfer: files,
                                                                                     bubbles: true }));
    """, encoded)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result .label"))
    direct = gateway.predict("digits_image", {"inputs": [{"b64": encoded}]}).json()["predictions"][0]
    assert result(browser)["label"] == direct["label"]
