"""A headless Debian chromium driven by Selenium through Debian's chromedriver (nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("AUTOTTS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AUTOTTS_CHROMEDRIVER", "/usr/bin/chromedriver")
# As root in a container and on a machine without a network: no sandbox, no GPU, and none of the background
# services that would try to reach the internet (each refused connection would be noise in the console log).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1400,1000")


def available() -> str | None:
    """Why no browser test can run here (None when chromium, chromedriver and selenium are all present)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{', '.join(missing)} missing: run .ci/browser-setup.sh (Debian's chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    return None


class Browser:
    """One chromium with a fresh profile; ``console_errors`` reads what the pages logged as errors."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="autotts-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(60)

    def open(self, url: str):
        """Load a page and wait until its scripts have drawn every plot."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get(url)
        WebDriverWait(self.driver, 30).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && [...document.querySelectorAll('div.plot')]"
            ".every(p => p.dataset.drawn === '1')"))
        return self.driver

    def follow(self, click, arrived):
        """Call ``click()``, wait until ``arrived(address)`` holds (a click only starts the navigation), then wait
        for the new page's plots like :meth:`open`."""
        from selenium.webdriver.support.ui import WebDriverWait

        click()
        WebDriverWait(self.driver, 30).until(lambda d: arrived(d.current_url))
        return self.open(self.driver.current_url)

    def console_errors(self) -> list[str]:
        """Error-level console entries since the last call (the log is drained on reading)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def screenshot(self, path: Path) -> Path:
        """A full-page PNG (the window grown to the page's height first)."""
        self.driver.set_window_size(1400, 1000)  # a page shorter than the last one must not keep its height
        height = self.driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
        self.driver.set_window_size(1400, max(1000, int(height)))
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
