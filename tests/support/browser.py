"""Debian's headless Chromium driven through its chromedriver's W3C WebDriver HTTP API (plain
JSON over loopback: no client package), for tests that must see what a person sees.

    with chromedriver(system, port, "/root/chromium-profile") as browser:
        browser.open("https://prefect.prh.test:8443/")
        browser.type_into("input[type=password]", "admin:secret")
        browser.click("button[type=submit]")
        browser.wait_for_text("hello")
        browser.screenshot(path)

chromedriver and Chromium run inside the booted *system* (which has the host name and trusts the
CA); the test talks to chromedriver on loopback, which the container shares.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from support.booted import BootedSystem

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
# Headless Chromium as root in a container, offline (DEVELOPERS.md).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1300",
]
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference


class Browser:
    """One WebDriver session."""

    def __init__(self, port: int, user_data_dir: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [*CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}"],
            },
        }
        answer = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"/session/{answer['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(  # noqa: S310 (loopback chromedriver)
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            raise AssertionError(f"WebDriver {method} {path}: {error.read().decode()}") from None

    def open(self, url: str) -> None:
        self._call("POST", f"{self.session}/url", {"url": url})

    def url(self) -> str:
        return self._call("GET", f"{self.session}/url")

    def find(self, css: str, timeout: float = 60) -> str:
        """The first element matching *css* once there is one (the UI renders after load)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._call(
                "POST", f"{self.session}/elements", {"using": "css selector", "value": css}
            )
            if found:
                return found[0][ELEMENT]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {css!r} on {self.url()} after {timeout:.0f}s")
            time.sleep(0.5)

    def type_into(self, css: str, text: str) -> None:
        element = self.find(css)
        self._call("POST", f"{self.session}/element/{element}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"{self.session}/element/{self.find(css)}/click")

    def text(self) -> str:
        """The rendered page's visible text (document.body.innerText)."""
        script = {"script": "return document.body ? document.body.innerText : ''", "args": []}
        return self._call("POST", f"{self.session}/execute/sync", script)

    def wait_for_text(self, *needles: str, timeout: float = 90) -> str:
        """The page text once it contains every needle."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(needle in text for needle in needles):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needles} not all on {self.url()}; the page says:\n{text}")
            time.sleep(1)

    def screenshot(self, path: Path) -> None:
        png = self._call("GET", f"{self.session}/screenshot")
        path.write_bytes(base64.b64decode(png))

    def quit(self) -> None:
        self._call("DELETE", self.session)


@contextmanager
def chromedriver(system: BootedSystem, port: int, user_data_dir: str) -> Iterator[Browser]:
    """chromedriver inside *system* on 127.0.0.1:*port*, one session; both ended after (the
    session first, which ends Chromium, then chromedriver by its PID inside)."""
    system.run(["install", "-d", "-m", "700", user_data_dir], check=True)
    driver = system.spawn(
        ["sh", "-c", 'echo "$$"; exec "$@" >/dev/null 2>&1', "sh", CHROMEDRIVER, f"--port={port}"]
    )
    assert driver.stdout is not None
    pid = driver.stdout.readline().strip()
    browser = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5):  # noqa: S310
                    break
            except OSError:
                if driver.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"chromedriver did not answer on port {port}") from None
                time.sleep(0.3)
        browser = Browser(port, user_data_dir)
        yield browser
    finally:
        if browser is not None:
            try:
                browser.quit()
            except (AssertionError, OSError):
                pass
        system.run(["kill", pid])
        try:
            driver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            system.run(["kill", "-KILL", pid])
            driver.wait(timeout=30)
