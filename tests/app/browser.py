"""Driving the explorer page in a real browser: headless Chromium through Selenium and the system
chromedriver (Debian: ``apt-get install chromium chromium-driver``; nothing is downloaded at run
time). Used by the browser test and by the script that takes the README screenshot
(``docs/figures/make_figures.py``); test tooling, not part of the installed package.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ExplorerPage", "ExplorerServer", "find_chromium", "free_port", "headless_chromium"]

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)


def find_chromium() -> tuple[str, str] | None:
    """``(browser, chromedriver)`` paths of an installed Chromium and its driver, or None."""
    browser = next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(window: tuple[int, int] = (1400, 1100)):
    """A headless Chromium WebDriver with a fresh profile (removed with the process)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise FileNotFoundError("Chromium and chromedriver not found: apt-get install chromium chromium-driver")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='ccnet-chromium-')}",
                 f"--window-size={window[0]},{window[1]}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ExplorerServer:
    """``ccnet explore ARGS --port PORT`` in a subprocess, as a context manager: entering waits
    until the page answers (or the process dies, with its output in the error)."""

    def __init__(self, args: Sequence[str], *, port: int | None = None, timeout: float = 120.0,
                 cwd: str | Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.command = [sys.executable, "-m", "ccnet.cli", "explore", *map(str, args), "--port", str(self.port)]
        self.timeout = timeout
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    def __enter__(self) -> ExplorerServer:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ccnet explore exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise TimeoutError(f"ccnet explore did not answer on {self.url} within {self.timeout:.0f} s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class ExplorerPage:
    """The explorer page in a WebDriver: open it, give it an image, click a pixel, read results."""

    def __init__(self, driver, url: str, timeout: float = 60.0) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.url = url
        self.wait = WebDriverWait(driver, timeout)

    def open(self) -> None:
        from selenium.webdriver.common.by import By

        self.driver.get(self.url)
        self.wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"))

    def upload(self, path: str | Path) -> None:
        from selenium.webdriver.common.by import By

        before = self.image_src("prediction")
        self.driver.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(Path(path).resolve()))
        self.wait_image("prediction", other_than=before)

    def load_scene(self, index: int) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys

        before = self.image_src("prediction")
        field = self.driver.find_element(By.CSS_SELECTOR, "#scene-index input")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(index), Keys.TAB)
        self.driver.find_element(By.ID, "load-scene").click()
        self.wait_image("prediction", other_than=before)

    def pick(self, name: str) -> None:
        """Choose ``name`` in the dropdown of given images."""
        from selenium.webdriver.common.by import By

        before = self.image_src("prediction")
        self.driver.find_element(By.CSS_SELECTOR, "#given input").click()
        option = self.wait.until(lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "#given [role=option]")
                                            if o.get_attribute("aria-label") == name])
        option[0].click()
        self.wait_image("prediction", other_than=before)

    def image_src(self, elem_id: str) -> str | None:
        """The ``src`` of the loaded image in element ``elem_id``, or None while it shows none."""
        return self.driver.execute_script(
            "const i = document.querySelector(arguments[0]);"
            "return i && i.complete && i.naturalWidth > 0 ? i.src : null;", f"#{elem_id} img")

    def wait_image(self, elem_id: str, other_than: str | None = None) -> str:
        """Waits until element ``elem_id`` shows a loaded image other than ``other_than``; its src."""
        return self.wait.until(lambda _: (src := self.image_src(elem_id)) and src != other_than and src)

    def click_pixel(self, elem_id: str, y: float, x: float, scale: int) -> None:
        """Click the image of ``elem_id`` where image pixel ``(y, x)`` is drawn (the picture is the
        image enlarged ``scale`` times, shown scaled to fit its element)."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        image = self.driver.find_element(By.CSS_SELECTOR, f"#{elem_id} img")
        box = self.driver.execute_script(
            "const i = arguments[0], r = i.getBoundingClientRect();"
            "return [r.width, r.height, i.naturalWidth, i.naturalHeight];", image)
        width, height, natural_w, natural_h = box
        fit = min(width / natural_w, height / natural_h)  # object-fit: contain
        offset_x = ((x + 0.5) * scale) * fit - natural_w * fit / 2
        offset_y = ((y + 0.5) * scale) * fit - natural_h * fit / 2
        ActionChains(self.driver).move_to_element_with_offset(image, round(offset_x), round(offset_y)).click().perform()

    def text(self, elem_id: str) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, elem_id).text

    def resources(self) -> list[str]:
        """Every URL the page has loaded (the Resource Timing entries)."""
        return self.driver.execute_script(
            "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)];")

    def fetch(self, url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()
