"""The technician web page in headless Chromium.

Real parts: mosquitto, the Sinopec dispenser simulator on a pty, the
collector serving the page, Debian's chromium + chromedriver driven by
selenium (no browser download; the Makefile installs them with apt).
A technician logs in, watches a nozzle go to fuelling while the simulator
fuels, sees the order appear, edits a config value (saved atomically with
``.prev``), sees a bad value refused with its reason, and three wrong
passwords lock the login from this address. The browser reports no
Content-Security-Policy violation on any page (page.js and page.css are
files; no inline script or style); an alarm the store stamped in UTC shows
at the station's time. Screenshots go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from buffer.store import OrderStore
from hil import day as hil_day
from hil import stack
from hil.stack import Mosquitto

DEMO_CONFIG = stack.ROOT / "config" / "demo.toml"
ARTIFACTS = stack.ROOT / "test-artifacts" / "web"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PASSWORD = "pump-island-7"
RAISED_UTC = "2026-03-01T04:47:00.000+00:00"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM and CHROMEDRIVER, "apt-get install chromium chromium-driver (make deps)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=412,915"):  # a phone's screen  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def gone(element: WebElement) -> Callable[[webdriver.Chrome], bool]:
    """True once ``element`` has left the page (the next page has replaced it).

    selenium's ``staleness_of`` only knows StaleElementReferenceException;
    chromium, asked mid-navigation, may answer "Node with given id does not
    belong to the document" (a plain WebDriverException; seen in CI) instead.
    """

    def predicate(_: webdriver.Chrome) -> bool:
        try:
            element.is_enabled()
        except WebDriverException:  # stale, or detached mid-navigation
            return True
        return False

    return predicate


def login(driver: webdriver.Chrome, url: str, password: str) -> None:
    driver.get(url)
    wait = WebDriverWait(driver, 30, poll_frequency=0.2)
    # A loaded machine may still be building the page get() returned for.
    wait.until(lambda d: d.find_elements(By.ID, "password"))[0].send_keys(password)
    button = driver.find_element(By.ID, "login-button")
    button.click()
    # The click does not wait for the POST's answer: on a loaded machine the
    # next driver.get() would abort it, and the attempt would never count.
    WebDriverWait(driver, 30).until(gone(button))


def test_technician_page(tmp_path: Path, broker: Mosquitto, browser: webdriver.Chrome) -> None:
    hash_file = tmp_path / "web-password"
    done = subprocess.run(
        [sys.executable, "-m", "collector", "web", "passwd", "--file", str(hash_file)],
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=stack.ROOT, check=True,
    )  # fmt: skip
    assert "password set" in done.stdout
    web_port = stack.free_port()
    text = DEMO_CONFIG.read_text()
    text = text.replace('path = ".demo/store.sqlite"', f'path = "{tmp_path / "store.sqlite"}"')
    text = text.replace('device = ".demo/pump1"', f'device = "{tmp_path / "pump1"}"')
    text = text.replace("port = 1883", f"port = {broker.port}")
    text += f'\n[control]\nsocket = "{tmp_path / "ctl.sock"}"\n'
    text += f'\n[web]\nlisten = "127.0.0.1:{web_port}"\npassword_file = "{hash_file}"\n'
    config = tmp_path / "station.toml"
    config.write_text(text)
    url = f"http://127.0.0.1:{web_port}/"
    # An alarm the store raised at 12:47 station time (+08:00), stamped in UTC
    # as the store stamps its own: the page shows the station's time.
    store = OrderStore(tmp_path / "store.sqlite")
    body = {"code": "STORE_FAULT", "state": "raised", "source": "store", "detail": {}}
    store.append_record("alarm", "store:STORE_FAULT:raised:1", {**body, "at": RAISED_UTC})
    store.close()

    dispenser = stack.dispenser(
        tmp_path, tmp_path / "pump1", orders=6, nozzles=1, rate=0.2, fill_seconds=3
    )
    collector = stack.collector(tmp_path, config, ["log.format=json"])
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)

    def element(element_id: str) -> WebElement:
        # A loaded machine may still be building the page a get() returned for.
        return wait.until(lambda d: d.find_elements(By.ID, element_id))[0]

    try:
        listening = lambda: "web_listening" in collector.log_path.read_text()  # noqa: E731
        stack.wait_until(listening, 20, "the web page")
        browser.get(url)
        assert browser.find_element(By.ID, "login")  # nothing but the login and a status
        wait.until(lambda d: "Ports 1/1" in d.find_element(By.ID, "mini").text)
        shot(browser, "1-login")

        login(browser, url, PASSWORD)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ports .card"))
        alarms = element("alarms").text
        assert "STORE_FAULT 2026-03-01T12:47:00.000+08:00" in alarms, alarms
        link = wait.until(lambda d: d.find_elements(By.ID, "link"))[0].text
        assert link == f"127.0.0.1:{broker.port}", "the endpoint in use (D18), the primary"
        nozzle = "#nozzles [data-state='fuelling']"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, nozzle))
        shot(browser, "2-fuelling")
        truth = dispenser.wait_lines(lambda line: "order_no" in line, 1, 30)[0]
        row = f"#recent tr[data-order='{truth['order_no']}']"
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        shot(browser, "3-order")

        browser.get(url + "config")
        area = element("toml")
        edited = area.get_attribute("value").replace("heartbeat_s = 10", "heartbeat_s = 20")
        browser.execute_script("arguments[0].value = arguments[1]", area, edited)
        element("save").click()
        wait.until(lambda d: d.find_elements(By.ID, "saved"))
        shot(browser, "4-config-saved")
        assert "heartbeat_s = 20" in config.read_text()
        assert config.with_name("station.toml.prev").read_text() == text

        area = element("toml")
        bad = area.get_attribute("value").replace("heartbeat_s = 20", 'heartbeat_s = "often"')
        browser.execute_script("arguments[0].value = arguments[1]", area, bad)
        element("save").click()
        errors = wait.until(lambda d: d.find_elements(By.ID, "errors"))[0].text
        shot(browser, "5-config-refused")
        assert "uplink.heartbeat_s" in errors, errors
        assert "heartbeat_s = 20" in config.read_text(), "a refused config is not written"

        browser.get(url + "logs")
        assert "web_listening" in element("log").text

        browser.get(url)
        logout = element("logout")
        logout.click()
        # As with a login: the next get() would abort the logout's POST, and
        # the session would still be open (CI saw the dashboard, not the login).
        wait.until(gone(logout))
        element("login")
        for _ in range(3):
            login(browser, url, "not-the-password")
        wait.until(lambda d: d.find_elements(By.ID, "locked"))
        login(browser, url, PASSWORD)
        assert browser.find_elements(By.ID, "login"), "locked: even the right password fails"
        shot(browser, "6-locked")
        console = [entry["message"] for entry in browser.get_log("browser")]
        assert not [m for m in console if "Content Security Policy" in m], console
        print(f"screenshots: {ARTIFACTS}")
    finally:
        collector.stop()
        dispenser.stop()


def test_dashboard_charts_a_day_of_history(tmp_path: Path, browser: webdriver.Chrome) -> None:
    """A day in the store (hil/day.py: three tanks, two deliveries, four nozzles
    selling, a backlog through an outage): each chart's SVG is on the page
    with one point per 5-minute tank reading, one bar per nozzle and hour with
    sales today, a band per delivery and a point per backlog sample; local
    times on the axes; the text tables beside them; the port row in words;
    no CSP violation (the SVG carries no style attribute)."""
    # The station's clock at about noon whatever the machine's, so "today"
    # is half a day of bars and does not turn over during the test.
    hours = (12 - datetime.now(UTC).hour) % 24
    hours = hours - 24 if hours > 14 else hours
    zone = f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"
    tz = timezone(timedelta(hours=hours))
    day = hil_day.fill(tmp_path / "store.sqlite", time.time_ns() // 1_000_000, tz)
    hash_file = tmp_path / "web-password"
    subprocess.run(
        [sys.executable, "-m", "collector", "web", "passwd", "--file", str(hash_file)],
        input=PASSWORD + "\n", capture_output=True, text=True, cwd=stack.ROOT, check=True,
    )  # fmt: skip
    web_port = stack.free_port()
    text = DEMO_CONFIG.read_text()
    text = text.replace('path = ".demo/store.sqlite"', f'path = "{tmp_path / "store.sqlite"}"')
    text = text.replace('device = ".demo/pump1"', f'device = "{tmp_path / "pump1"}"')
    text = text.replace('station = "DEMO-0001"', f'station = "DEMO-0001"\ntimezone = "{zone}"')
    text += f'\n[web]\nlisten = "127.0.0.1:{web_port}"\npassword_file = "{hash_file}"\n'
    config = tmp_path / "station.toml"
    config.write_text(text)
    dispenser = stack.dispenser(tmp_path, tmp_path / "pump1", orders=0, nozzles=2)
    collector = stack.collector(tmp_path, config, ["log.format=json"])
    wait = WebDriverWait(browser, 30, poll_frequency=0.2)
    try:
        listening = lambda: "web_listening" in collector.log_path.read_text()  # noqa: E731
        stack.wait_until(listening, 20, "the web page")
        url = f"http://127.0.0.1:{web_port}/"
        login(browser, url, PASSWORD)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ports .card"))
        row = browser.find_element(By.ID, "port-1").text
        assert "Sinopec" in row and "轮询 polls the pumps" in row and "地址 address 1" in row, row

        def points(css: str) -> int:
            found = browser.find_element(By.CSS_SELECTOR, css).get_attribute("points") or ""
            return len(found.split())

        for tank, buckets in day.tank_buckets.items():
            chart = f"#chart-tank-{tank} svg"
            assert points(f"{chart} polyline.volume") == len(buckets)
            assert points(f"{chart} polyline.water") == len(buckets)
            bands = browser.find_elements(By.CSS_SELECTOR, f"{chart} rect.band")
            assert len(bands) == day.deliveries[tank], tank
            ticks = browser.find_element(By.CSS_SELECTOR, f"{chart} .axis.time").text
            assert ticks.count(":00") == 8, ticks  # every 3 h of local time
            assert browser.find_element(By.CSS_SELECTOR, f"#chart-tank-{tank} table.sr-only")
        bars = browser.find_elements(By.CSS_SELECTOR, "#chart-nozzles svg rect.hbar")
        assert len(bars) == len(day.bars)
        # The day's samples and the one the page took when it started.
        assert points("#chart-backlog svg polyline.backlog") == day.backlog_samples + 1
        caption = browser.find_element(By.CSS_SELECTOR, "#chart-backlog figcaption").text
        assert "Uplink backlog" in caption and "上传积压" in caption
        assert not browser.find_elements(By.CSS_SELECTOR, "#charts [style]")
        # The whole section, for people to look at (taller than the window).
        browser.set_window_size(700, 915)
        box = browser.execute_script(
            "const r = document.getElementById('charts').getBoundingClientRect();"
            "return {x: r.left + scrollX, y: r.top + scrollY,"
            " width: r.width, height: r.height + 16};"
        )
        shot = browser.execute_cdp_cmd(
            "Page.captureScreenshot", {"captureBeyondViewport": True, "clip": {**box, "scale": 1}}
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "7-charts.png").write_bytes(base64.b64decode(shot["data"]))
        console = [entry["message"] for entry in browser.get_log("browser")]
        assert not [m for m in console if "Content Security Policy" in m], console
    finally:
        collector.stop()
        dispenser.stop()
