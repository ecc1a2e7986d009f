"""The calculator page in a real headless browser (Debian's chromium + chromedriver, Selenium).

Fills the form, submits, and checks the rendered numbers against the API's JSON for the same
inputs; re-opens the shareable URL; checks the error and infeasible answers. Screenshots go to
``$CARBONSCALING_ARTIFACTS`` (default: pytest's tmp dir). Skips when chromium, chromedriver or
selenium is absent (``.ci/run`` installs them, so CI runs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("selenium")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    if os.environ.get("CARBONSCALING_REQUIRE_BROWSER"):  # CI installs them: missing there is a failure
        raise RuntimeError("CARBONSCALING_REQUIRE_BROWSER is set but chromium/chromedriver are missing")
    pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

import httpx  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from carbonscaling.service import create_app  # noqa: E402

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


@pytest.fixture(scope="module")
def server():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.monotonic()
    while not srv.started:
        assert time.monotonic() - t0 < 30, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    th.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    opts = Options()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    drv = webdriver.Chrome(options=opts, service=Service(DRIVER))
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    d = Path(os.environ.get("CARBONSCALING_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def wait_state(drv, *states, timeout=90):
    WebDriverWait(drv, timeout).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                      in states)
    return drv.find_element(By.TAG_NAME, "body").get_attribute("data-state")


def value(drv, elem_id) -> float:
    return float(drv.find_element(By.ID, elem_id).get_attribute("data-value"))


def text(drv, elem_id) -> str:
    return drv.find_element(By.ID, elem_id).text


def fill(drv, elem_id, val) -> None:
    el = drv.find_element(By.ID, elem_id)
    el.clear()
    el.send_keys(str(val))


def check_against_api(drv, api: dict) -> None:
    c, perf, lay = api["carbon"], api["performance"], api["layout"]
    assert value(drv, "out-total") == pytest.approx(c["total_tco2e"], rel=1e-12)
    assert value(drv, "out-total-low") == pytest.approx(c["total_low_tco2e"], rel=1e-12)
    assert value(drv, "out-total-high") == pytest.approx(c["total_high_tco2e"], rel=1e-12)
    assert value(drv, "out-operational") == pytest.approx(c["operational_tco2e"], rel=1e-12)
    assert value(drv, "out-embodied") == pytest.approx(c["embodied_tco2e"], rel=1e-12)
    assert value(drv, "out-energy") == pytest.approx(api["energy_kwh"] / 1000, rel=1e-12)
    assert value(drv, "out-days") == pytest.approx(perf["duration_days"], rel=1e-12)
    assert int(value(drv, "out-devices")) == lay["devices"]
    assert text(drv, "out-devices") == f"{lay['devices']:,}"
    assert text(drv, "out-mfu") == f"{perf['mfu']:.3f}"
    # what a person reads: the total rounded to 4 significant digits
    shown = float(text(drv, "out-total").replace(",", ""))
    assert shown == pytest.approx(c["total_tco2e"], rel=1e-3)
    for k in ("tp", "pp", "dp", "zero", "microbatch", "recompute"):
        assert drv.find_element(By.ID, f"layout-{k}").get_attribute("data-value") == str(lay[k])
    vp = lay.get("vp", lay.get("interleave"))
    assert drv.find_element(By.ID, "layout-vp").get_attribute("data-value") == str(vp)
    # The carbon chart's stacked parts add up to the API's operational and embodied totals
    # (a part keyed under another power model's name would silently draw nothing).
    for bar, key in (("operational", "operational_tco2e"), ("embodied", "embodied_tco2e")):
        label = drv.find_element(By.CSS_SELECTOR, f'#chart-carbon svg text[data-bar="{bar}"]')
        assert float(label.get_attribute("data-value")) == pytest.approx(c[key], rel=1e-9), bar
    for chart in ("chart-step", "chart-carbon", "chart-memory"):
        assert drv.find_elements(By.CSS_SELECTOR, f"#{chart} svg rect"), chart


def test_fill_submit_and_compare_with_api(server, browser, shots):
    browser.get(server + "/")
    wait_state(browser, "ready")
    Select(browser.find_element(By.ID, "model")).select_by_value("megatron-1.7b")
    Select(browser.find_element(By.ID, "device")).select_by_value("A100-80GB")
    Select(browser.find_element(By.ID, "region")).select_by_value("europe-west1")
    fill(browser, "deadline_days", 30)
    browser.find_element(By.ID, "submit").click()
    assert wait_state(browser, "done", "error", "infeasible") == "done"
    browser.save_screenshot(str(shots / "page-catalog-model.png"))
    api = httpx.post(server + "/api/estimate", json={"model": "megatron-1.7b", "device": "A100-80GB",
                                                     "region": "europe-west1", "deadline_days": 30,
                                                     "years_ahead": 0, "precision": "bf16",
                                                     "objective": "fastest"}, timeout=60).json()
    check_against_api(browser, api)
    assert api["breakdown"]["carbon"]["ci_g_per_kwh"] < 300  # the chosen region, not the default grid

    # The shareable URL reproduces the answer in a fresh page load.
    share = browser.find_element(By.ID, "share").get_attribute("value")
    assert "model=megatron-1.7b" in share and "region=europe-west1" in share and "deadline_days=30" in share
    browser.get("about:blank")
    browser.get(share)
    assert wait_state(browser, "done", "error", "infeasible") == "done"
    check_against_api(browser, api)


def test_preset_projected_device(server, browser, shots):
    browser.get(server + "/")
    wait_state(browser, "ready")
    browser.find_element(By.CSS_SELECTOR, "input[name=model_src][value=preset]").click()
    Select(browser.find_element(By.ID, "preset")).select_by_value("cs-v1")
    fill(browser, "d_model", 6144)
    Select(browser.find_element(By.ID, "device")).select_by_value("B100")
    fill(browser, "years_ahead", 2)
    fill(browser, "ci", 120)
    browser.find_element(By.ID, "submit").click()
    assert wait_state(browser, "done", "error", "infeasible") == "done"
    browser.save_screenshot(str(shots / "page-preset-projected.png"))
    api = httpx.post(server + "/api/estimate", json={"preset": "cs-v1", "d_model": 6144, "device": "B100",
                                                     "years_ahead": 2, "ci": 120, "deadline_days": 90,
                                                     "precision": "bf16", "objective": "fastest"}, timeout=60).json()
    check_against_api(browser, api)
    assert "B100+2y" in text(browser, "title")


def test_bands_and_pareto_front(server, browser, shots):
    browser.get(server + "/?model=llama3.1-8b&device=H100&region=us-east5&deadline_days=60")
    assert wait_state(browser, "done", "error", "infeasible") == "done"
    api = httpx.post(server + "/api/estimate", json={"model": "llama3.1-8b", "device": "H100", "region": "us-east5",
                                                     "deadline_days": 60}, timeout=60).json()
    band = api["uncertainty"]["bands"]["total_tco2e"]
    assert value(browser, "out-band-p5") == pytest.approx(band["p5"], rel=1e-12)
    assert value(browser, "out-band-p95") == pytest.approx(band["p95"], rel=1e-12)
    # which rows of the step-time residuals the band drew from (the H100's own), as the API says
    assert text(browser, "sensitivity-pool") == f"step_time drawn from: {api['uncertainty']['inputs']['step_time']['pool']['line']}."
    browser.find_element(By.ID, "front").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-front") == "done")
    front = httpx.post(server + "/api/front/deadline", json={"model": "llama3.1-8b", "device": "H100",
                                                             "region": "us-east5", "deadline_days": 60,
                                                             "years_ahead": 0, "precision": "bf16", "points": 6},
                       timeout=120).json()
    circles = browser.find_elements(By.CSS_SELECTOR, "#chart-front circle.front-point")
    assert len(circles) == len(front["rows"])
    filled = [c for c in circles if c.get_attribute("fill") != "#fff"]
    assert len(filled) == sum(r["on_front"] for r in front["rows"])
    browser.execute_script("document.getElementById('sensitivity-fig').scrollIntoView()")
    browser.save_screenshot(str(shots / "page-bands-front.png"))


def test_bad_yaml_and_infeasible(server, browser, shots):
    browser.get(server + "/")
    wait_state(browser, "ready")
    browser.find_element(By.CSS_SELECTOR, "input[name=model_src][value=yaml]").click()
    fill(browser, "model_yaml", "d_model: 4096\nn_layers: -2\n")
    browser.find_element(By.ID, "submit").click()
    assert wait_state(browser, "error", "done", "infeasible") == "error"
    assert text(browser, "error").startswith("model_yaml.n_layers: ")
    browser.save_screenshot(str(shots / "page-bad-input.png"))

    browser.get(server + "/?preset=cs-v1&d_model=98304&device=B100")
    assert wait_state(browser, "infeasible", "done", "error") == "infeasible"
    assert "binding constraint: deadline" in text(browser, "infeasible")
    browser.save_screenshot(str(shots / "page-infeasible.png"))
