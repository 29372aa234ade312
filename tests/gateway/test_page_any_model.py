"""The page serves a model a user adds through models.toml: the README's wine example (two tensor inputs, a labelled
output and a regression) is built, exported and served on its own, and the page, in a real headless Chromium, makes
its form from the signature, labels its outputs, draws its Kernel SHAP feature bars and plots its service status.

The screenshot the README shows is taken here (into $MODELPORT_SCREENSHOT_DIR when set, e.g. docs/, else the test's
tmp dir)."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import launch_triton
from tests.gateway.conftest import launch_gateway
from tests.gateway.test_page import browser, open_page  # noqa: F401 - the browser fixture
from tests.test_adding_a_model import readme_block, run

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """A project of the README's wine model alone: its build snippet, its models.toml table, exported and served."""
    project = tmp_path_factory.mktemp("wine")
    run([sys.executable, "-c", readme_block("build")], cwd=project)
    (project / "models.toml").write_text(readme_block("spec"))
    run([sys.executable, "-m", "export", "--spec", str(project / "models.toml"), "--repository",
         str(project / "model_repository"), "--int8-search-seconds", "5"], cwd=ROOT)
    return project


@pytest.fixture(scope="module")
def wine_gateway(wine, tmp_path_factory):
    with launch_triton(wine / "model_repository", tmp_path_factory.mktemp("triton")) as triton:
        with launch_gateway(triton, tmp_path_factory.mktemp("gateway"), "--spec", str(wine / "models.toml"),
                            "--repository", str(wine / "model_repository"), "--drift-window", "20",
                            "--drift-min-samples", "10", keys={"full": {}}) as running:
            yield running


def explain(gateway, inputs: dict) -> dict:
    response = requests.post(f"{gateway.url}/v1/models/wine:explain", json={"inputs": inputs},
                             headers=gateway.auth(), timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def shown_features(driver) -> dict[str, float]:
    from selenium.webdriver.common.by import By

    return {row.get_attribute("data-feature"): float(row.get_attribute("data-value"))
            for row in driver.find_elements(By.CSS_SELECTOR, "#explanation .feature")}


def test_the_page_makes_a_form_for_the_users_model_and_explains_and_plots_it(browser, wine, wine_gateway,  # noqa: F811
                                                                            tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    wait = open_page(browser, wine_gateway, "wine")
    heldout = np.load(wine / "models" / "wine" / "heldout.npz")
    fields = {name: [float(f.get_attribute("value")) for f in browser.find_elements(
        By.CSS_SELECTOR, f"fieldset[data-input={name}] .numbers input")] for name in ("chemistry", "color")}
    for name in fields:  # one number field per value, holding the first held-out wine
        np.testing.assert_allclose(fields[name], heldout[name][0], rtol=1e-6)

    row = {name: np.load(wine / "models" / "wine" / "three_wines.npz")[name][1] for name in ("chemistry", "color")}
    for name, values in row.items():  # a CSV row fills the fields at once
        csv = browser.find_element(By.CSS_SELECTOR, f"fieldset[data-input={name}] .csv input")
        csv.send_keys(", ".join(f"{v:.6g}" for v in values) + Keys.TAB)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: d.find_element(By.ID, "explanation").get_attribute("data-method") == "kernel-shap")

    inputs = {name: [[float(f"{v:.6g}") for v in values]] for name, values in row.items()}
    direct = wine_gateway.predict("wine", {"inputs": inputs}).json()["predictions"][0]["outputs"]
    cultivar = browser.find_element(By.CSS_SELECTOR, "#result [data-output=cultivar]")
    assert cultivar.find_element(By.CSS_SELECTOR, ".label").text == direct["cultivar"]["label"]
    assert [b.get_attribute("data-label") for b in cultivar.find_elements(By.CSS_SELECTOR, ".bar")] == [
        "barolo", "grignolino", "barbera"]
    alcohol = browser.find_element(By.CSS_SELECTOR, "#result [data-output=alcohol] .values").text
    assert float(alcohol) == pytest.approx(direct["alcohol"][0], abs=0.006)

    found = explain(wine_gateway, inputs)
    for label in (found["label"], next(x for x in found["labels"] if x != found["label"])):
        Select(browser.find_element(By.ID, "explain-label")).select_by_visible_text(label)
        bars = shown_features(browser)
        attributions = dict(zip(found["features"], found["attributions"][found["labels"].index(label)]))
        assert len(bars) == 12 and all(bars[f] == pytest.approx(attributions[f], abs=1e-9) for f in bars), label
    # the page says what the bars add up to, and it is prediction - baseline
    i = found["labels"].index(label)
    said = browser.find_element(By.CSS_SELECTOR, "#explanation .meta").text
    assert found["reference"] == "held-out mean" and "(held-out mean)" in said, said
    assert float(said.split("they sum to ")[1].split(" ")[0]) == pytest.approx(
        found["prediction"][i] - found["baseline"][i], rel=0.01, abs=1e-3), said
    assert sum(found["attributions"][i]) == pytest.approx(found["prediction"][i] - found["baseline"][i], abs=1e-5)
    Select(browser.find_element(By.ID, "explain-label")).select_by_visible_text(found["label"])

    for k in range(30):  # traffic for the status view over a few refreshes: held-out wines, one a request
        item = {name: [heldout[name][k % len(heldout[name])].tolist()] for name in ("chemistry", "color")}
        assert wine_gateway.predict("wine", {"inputs": item}).status_code == 200
        time.sleep(0.25)
    # the status view is redrawn every refresh: read it in one script, not element by element
    read = """const card = document.querySelector("#plots [data-model=wine]");
              return card && {title: card.querySelector("h3").textContent,
                              now: Array.from(card.querySelectorAll(".chart")).map(c => c.textContent),
                              points: Array.from(card.querySelectorAll("polyline")).map(
                                  p => p.getAttribute("points").split(" ").filter(Boolean).length)};"""
    wait.until(lambda d: (d.execute_script(read) or {}).get("title", "").endswith("32 requests")
               and min(d.execute_script(read)["points"]) >= 2)
    card = browser.execute_script(read)
    charts = {text.split(" ")[0]: text for text in card["now"]}
    assert set(charts) == {"req/s", "p50/p99", "errors/s", "drift"} and len(card["points"]) == 5, card
    assert charts["p50/p99"].endswith(" ms"), charts
    drift = charts["drift"].removeprefix("drift (PSI) ")
    assert drift != "–" and float(drift) >= 0, charts  # 20 predictions against the card's reference

    target = Path(os.environ.get("MODELPORT_SCREENSHOT_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    bottom = browser.execute_script("return document.querySelector('footer').getBoundingClientRect().bottom")
    shot = shot.crop((0, 0, shot.width, min(shot.height, int(bottom) + 16)))
    shot.quantize(colors=64).save(target / "page.png", optimize=True)  # a small PNG for the README
    assert (target / "page.png").stat().st_size > 10_000
