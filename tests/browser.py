"""Headless Chromium driven over the Chrome DevTools Protocol (CDP), for tests.

:func:`headless_chromium` starts ``/usr/bin/chromium`` with a fresh profile and no
network of its own, reads the DevTools address from its stderr, and yields a
:class:`Page` connected to its first tab over a websocket (``websocket-client``).
Every wait has a deadline; the browser's process group is killed on the way out.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import websocket

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--remote-debugging-port=0"]
LISTENING = re.compile(r"DevTools listening on (ws://[^\s]+)")


class BrowserError(AssertionError):
    """The browser did not start, answer or load in time, or a script threw."""


class Page:
    """One tab: send CDP commands, wait for events, evaluate JavaScript."""

    def __init__(self, ws_url: str, timeout: float) -> None:
        self.timeout = timeout
        self.ws = websocket.create_connection(ws_url, timeout=timeout, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def close(self) -> None:
        self.ws.close()

    def _recv(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("timed out waiting for the browser")
        self.ws.settimeout(left)
        try:
            msg: dict[str, Any] = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise BrowserError("timed out waiting for the browser") from None
        return msg

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Run one command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == ident:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str) -> dict[str, Any]:
        """The first kept or coming event named ``method`` (removed from the kept ones)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == method:
                    return self.events.pop(i)
            msg = self._recv(deadline)
            if "method" in msg:
                self.events.append(msg)

    def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"cannot load {url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Uncaught exceptions, console errors and browser log errors (CSP ones included)."""
        out = []
        for ev in self.events:
            p = ev.get("params", {})
            if ev["method"] == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails")))
            elif ev["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(str(p.get("args")))
            elif ev["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(str(p["entry"].get("text")))
        return out


def _devtools_url(proc: subprocess.Popen[bytes], stderr: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        m = LISTENING.search(stderr.read_text(encoding="utf-8", errors="replace"))
        if m:
            return m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = stderr.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise BrowserError(f"chromium did not start (exit code {proc.poll()}): {tail}")


def _first_tab(http_base: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"{http_base}/json/list", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            targets = []
        for t in targets:
            if t.get("type") == "page" and t.get("webSocketDebuggerUrl"):
                return str(t["webSocketDebuggerUrl"])
        time.sleep(0.05)
    raise BrowserError("chromium has no tab to drive")


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Stop the browser and its helpers (its own process group), at once if need be."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # helpers that outlived the main process
    except ProcessLookupError:
        pass
    proc.wait(timeout=5)


@contextmanager
def headless_chromium(timeout: float = 15.0) -> Iterator[Page]:
    """A :class:`Page` of a fresh headless Chromium; the browser is always killed after."""
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserError(f"{CHROMIUM} is missing: apt-get install chromium")
    profile = Path(tempfile.mkdtemp(prefix="asof-chromium-"))
    stderr = profile.parent / (profile.name + ".stderr")
    with open(stderr, "wb") as err:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    page: Page | None = None
    try:
        deadline = time.monotonic() + timeout
        browser_ws = _devtools_url(proc, stderr, deadline)
        http_base = "http://" + browser_ws[len("ws://"):].split("/", 1)[0]
        page = Page(_first_tab(http_base, deadline), timeout)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        yield page
    finally:
        if page is not None:
            page.close()
        _kill(proc)
        shutil.rmtree(profile, ignore_errors=True)
        stderr.unlink(missing_ok=True)
