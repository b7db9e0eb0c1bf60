"""The dashboard in a real browser (headless Chromium through Selenium) against a real
site (``vpp run`` in a subprocess: the simulated plant, its processes, the API).

The operator opens the login link and sees live data (frequency, unit rows, a drawn
chart, at least five stream updates a second); an emergency stop through the page's
confirm reaches the field controller and comes back in the page's timeline; a refused
command shows its reason; a viewer who logs in with the form gets no controls. A
screenshot of the populated page goes to ``test-artifacts/dashboard.png``.

Chromium and its driver come from Debian (``scripts/setup test``); without them the
tests fail rather than skip, so a machine that cannot run them says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from vpp.config.loader import default_text
from vpp.orchestrator.api.credentials import hash_secret, new_token

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
VIEWER_PASSWORD = "calm-viewer-pw"
#: The site runs longer than the tests need; the fixture stops it at the end.
RUN_S = 600
T = TypeVar("T")

pytestmark = pytest.mark.allow_leaks(
    "sockets", reason="Selenium's HTTP client keeps its connections to chromedriver pooled"
)


@dataclass
class Site:
    """A running ``vpp run`` and how to reach its API."""

    proc: subprocess.Popen[bytes]
    base: str
    token: str
    log: Path

    @property
    def login_link(self) -> str:
        return f"{self.base}login?token={self.token}"

    def get(self, path: str) -> Any:
        """GET ``path`` with the operator's bearer token (JSON)."""
        req = urllib.request.Request(
            self.base + path.lstrip("/"), headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def site_yaml(token: str) -> str:
    site = yaml.safe_load(default_text())
    site["api"] = {
        # Ten updates a second: the page has to keep up with more than it needs to show.
        "stream_interval_s": 0.1,
        "users": {
            "operator": {"identity": "operator", "token_hash": hash_secret(token)},
            "watcher": {"identity": "viewer", "password_hash": hash_secret(VIEWER_PASSWORD)},
        },
    }
    return yaml.safe_dump(site)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    d = tmp_path_factory.mktemp("dash")
    token = new_token()
    (d / "site.yaml").write_text(site_yaml(token))
    log = d / "stderr.log"
    env = {**os.environ, "VPP__API__PORT": "0"}
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vpp", "run", "--config", str(d / "site.yaml"),
             "--duration", str(RUN_S), "--history", str(d / "h.db")],
            cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        found = Site(proc, _dashboard_url(proc, log), token, log)
        _until_serving(found)
        yield found
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _dashboard_url(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> str:
    """The address ``vpp run`` prints on stderr (with users configured: no token in it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(r"vpp run: dashboard at (http://\S+/)", log.read_text(errors="replace"))
        if m:
            return m.group(1)
        assert proc.poll() is None, f"vpp run ended: {log.read_text(errors='replace')[-2000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no dashboard address in {timeout} s: {log.read_text()[-2000:]}")


def _until_serving(site: Site, timeout: float = 60.0) -> None:
    """Wait until the API answers with the site's state: the address is printed before
    the API process listens, and the state fills as the processes start publishing."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert site.proc.poll() is None, f"vpp run ended: {site.log.read_text()[-2000:]}"
        try:
            status = site.get("/api/status")
            if status["grid"]["hz"] is not None and status["fleet"]["units_online"] == 3:
                return
            last = status["fleet"]
        except OSError as exc:  # refused until the API listens
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"the API did not serve a live site in {timeout} s: {last}")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromedriver are needed: scripts/setup test "
                    "(apt-get install chromium chromium-driver)")  # fmt: skip
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,800", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    try:
        # The path given: Selenium Manager (which would download a driver) stays out of it.
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    except WebDriverException as exc:
        pytest.fail(f"chromium did not start: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: WebDriver, cond: Callable[[WebDriver], T], what: str,
             timeout: float = 30.0) -> T:  # fmt: skip
    """``cond``'s first truthy value within ``timeout`` seconds."""
    try:
        value: T = WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)
    except Exception as exc:  # a TimeoutException with no message of its own
        raise AssertionError(f"timed out waiting for {what}") from exc
    return value


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


#: Pixels of the frequency chart drawn in the line's colour: the line is really there
#: (the band's wash and the grid are other colours).
LINE_PIXELS = """
const c = document.getElementById('freq-chart');
const hex = getComputedStyle(document.documentElement).getPropertyValue('--freq').trim();
const want = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < px.length; i += 4) {
  if (px[i + 3] > 200 && Math.abs(px[i] - want[0]) < 24 && Math.abs(px[i + 1] - want[1]) < 24
      && Math.abs(px[i + 2] - want[2]) < 24) n += 1;
}
return n;
"""


def live(driver: WebDriver) -> bool:
    """The page shows a frequency and three unit rows with a SOC."""
    hz = js(driver, "return document.getElementById('hz').textContent")
    socs = js(driver, "return [...document.querySelectorAll('#units tbody .soc-text')]"
                      ".map((e) => e.textContent)")  # fmt: skip
    return bool(re.fullmatch(r"\d\d\.\d{3}", hz)) and len(socs) == 3 \
        and all(re.fullmatch(r"\d+\.\d", s) for s in socs)  # fmt: skip


def test_operator_sees_live_data(site: Site, browser: WebDriver) -> None:
    browser.get(site.login_link)
    wait_for(browser, live, "frequency and unit rows")
    assert 45.0 < float(text_of(browser, "#hz")) < 55.0
    units = js(browser, "return [...document.querySelectorAll('#units tbody tr')]"
                        ".map((r) => r.dataset.unit)")  # fmt: skip
    assert units == ["bess-1", "bess-2", "bess-3"]
    assert "operator" in text_of(browser, "#who")
    assert wait_for(browser, lambda d: js(d, LINE_PIXELS) > 100, "the frequency line drawn")

    # Updates counted by the page over a few seconds, and what drawing them cost.
    before = js(browser, "return {...window.vppDash}")
    t0 = time.monotonic()
    time.sleep(4.0)
    after = js(browser, "return {...window.vppDash}")
    rate = (after["updates"] - before["updates"]) / (time.monotonic() - t0)
    assert rate >= 5.0, f"{rate:.1f} updates/s"
    frames = after["frames"] - before["frames"]
    # One paint per animation frame at most: never more paints than updates and ticks.
    assert 0 < frames <= after["updates"] - before["updates"] + 6
    draw_ms = (after["drawMs"] - before["drawMs"]) / frames
    assert draw_ms < 16.0, f"a paint takes {draw_ms:.1f} ms on average"
    assert after["connected"] and after["age"] is not None and after["age"] < 2.0
    assert text_of(browser, "#conn") == "live"
    save_screenshot(browser)


def save_screenshot(driver: WebDriver) -> None:
    """The whole page (the window made as tall as the page, then put back)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = int(js(driver, "return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, max(800, height + 20))
    time.sleep(0.5)  # a resize repaints the charts on the next frame
    assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    driver.set_window_size(1280, 800)


def controller(site: Site, unit: str) -> dict[str, Any]:
    ctl: dict[str, Any] = site.get(f"/api/units/{unit}")["controller"]
    return ctl


def test_emergency_stop_with_confirm(site: Site, browser: WebDriver) -> None:
    browser.get(site.base)
    wait_for(browser, live, "the dashboard")
    assert controller(site, "bess-1")["enabled"] is True
    assert controller(site, "bess-2")["enabled"] is True

    # Cancelled: nothing is sent.
    browser.find_element(By.CSS_SELECTOR, "button[data-unit='bess-2'][data-action="
                                          "'emergency_stop']").click()  # fmt: skip
    wait_for(browser, lambda d: js(d, "return document.getElementById('confirm').open"),
             "the confirm dialog")  # fmt: skip
    assert "bess-2" in text_of(browser, "#confirm-text")
    browser.find_element(By.ID, "confirm-cancel").click()

    browser.find_element(By.CSS_SELECTOR, "button[data-unit='bess-1'][data-action="
                                          "'emergency_stop']").click()  # fmt: skip
    wait_for(browser, lambda d: js(d, "return document.getElementById('confirm').open"),
             "the confirm dialog")  # fmt: skip
    assert "Emergency stop unit bess-1" in text_of(browser, "#confirm-text")
    browser.find_element(By.ID, "confirm-ok").click()
    wait_for(browser, lambda d: "emergency_stop bess-1: done" in text_of(d, "#outcome"),
             "the command's outcome")  # fmt: skip

    # The plant: the field controller stopped writing to the unit; bess-2 untouched.
    assert controller(site, "bess-1")["enabled"] is False
    assert controller(site, "bess-2")["enabled"] is True
    # The page: the command in the timeline (as the field controller audited it) and
    # the unit's state.
    entry = wait_for(
        browser,
        lambda d: [
            e
            for e in d.find_elements(By.CSS_SELECTOR, "#timeline li[data-kind='command']")
            if "emergency_stop bess-1 by operator" in e.text
        ],
        "the command in the timeline",
    )
    assert "DONE" in entry[0].text.upper()
    wait_for(browser, lambda d: text_of(d, "tr[data-unit='bess-1'] td:nth-child(9)")
             .startswith("disabled"), "bess-1 shown disabled")  # fmt: skip

    # A refusal is shown with its reason.
    browser.find_element(By.CSS_SELECTOR, "input.kw-input[data-unit='bess-2']").send_keys("1e6")
    browser.find_element(By.CSS_SELECTOR, "button[data-unit='bess-2'][data-action="
                                          "'set_power']").click()  # fmt: skip
    wait_for(browser, lambda d: "refused" in text_of(d, "#outcome"), "the refusal")
    outcome = text_of(browser, "#outcome")
    assert "beyond the rating" in outcome and "invalid" in outcome
    assert "bad" in str(browser.find_element(By.ID, "outcome").get_attribute("class"))
    save_screenshot(browser)  # again, now with the command, its state and a refusal


def test_viewer_logs_in_and_gets_no_controls(site: Site, browser: WebDriver) -> None:
    browser.delete_all_cookies()
    browser.get(site.base)
    wait_for(browser, lambda d: d.find_element(By.ID, "login-form").is_displayed(),
             "the login form")  # fmt: skip
    browser.find_element(By.ID, "login-user").send_keys("watcher")
    browser.find_element(By.ID, "login-password").send_keys("wrong")
    browser.find_element(By.ID, "login-submit").click()
    wait_for(browser, lambda d: "Wrong user or password" in text_of(d, "#login-error"),
             "the refusal of a wrong password")  # fmt: skip

    browser.find_element(By.ID, "login-password").clear()
    browser.find_element(By.ID, "login-password").send_keys(VIEWER_PASSWORD)
    browser.find_element(By.ID, "login-submit").click()
    wait_for(browser, live, "the viewer's dashboard")
    assert "watcher" in text_of(browser, "#who") and "viewer" in text_of(browser, "#who")
    assert browser.find_elements(By.CSS_SELECTOR, "#units button, #units input") == []
    for form in ("target-form", "market-controls"):
        assert not browser.find_element(By.ID, form).is_displayed()
    # The viewer still sees what the operator did.
    wait_for(browser, lambda d: any("emergency_stop bess-1" in e.text for e in
             d.find_elements(By.CSS_SELECTOR, "#timeline li[data-kind='command']")),
             "the operator's command in the viewer's timeline")  # fmt: skip


def test_narrow_screen(site: Site, browser: WebDriver) -> None:
    browser.set_window_size(420, 900)
    try:
        browser.get(site.base)
        wait_for(browser, live, "the dashboard")
        time.sleep(0.5)
        # Nothing wider than the screen but the units table, which scrolls in its card.
        overflow = js(browser, "return document.documentElement.scrollWidth "
                               "- document.documentElement.clientWidth")  # fmt: skip
        assert overflow <= 0
        width = js(browser, "return document.getElementById('freq-chart').clientWidth")
        assert 300 <= width <= 420
        assert wait_for(browser, lambda d: js(d, LINE_PIXELS) > 50, "the line drawn narrow")
    finally:
        browser.set_window_size(1280, 800)
