"""Test support: a real headless Chromium driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`: fd 3 carries our commands, fd 4 its answers and events, each message
JSON ended by a NUL byte). No port is opened and no client library is needed.

`Browser.load(path)` opens a local page in a new tab and reports what the browser did with it:
- console errors: `console.error`/`console.assert`, uncaught exceptions, and the browser's own error
  log entries (failed loads, Content-Security-Policy violations);
- every request the page made besides its own document (any scheme: http, https, ws, data, blob);
- the DOM as rendered (`document.documentElement.outerHTML`) and the text a reader sees
  (`document.body.innerText`);
- a full-page PNG screenshot.

Chromium runs in a network namespace of its own with only a loopback device (`unshare --net`) when
the machine allows it, so a page that does reach out fails without leaving the machine; the request
log still records the attempt. Every wait is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _namespace_prefix() -> list[str]:
    """`unshare` arguments for an empty network namespace, or none when the machine refuses them."""
    if shutil.which("unshare") is None:
        return []
    for prefix in (["unshare", "--user", "--map-root-user", "--net"], ["unshare", "--net"]):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return prefix
    return []


class BrowserError(RuntimeError):
    pass


@dataclass
class PageLoad:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    text: str = ""
    dom: str = ""
    screenshot: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)  # results of the `expressions` asked for


class Browser:
    """One Chromium process; each `load` opens and closes a tab."""

    def __init__(self, executable: str, workdir: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.isolated = False
        self.print_media = False  # emulate the print media type (for print CSS checks)
        profile = workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromium.log"
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def remap() -> None:  # in the child, before exec: the pipe ends become fds 3 and 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        prefix = _namespace_prefix()
        self.isolated = bool(prefix)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*prefix, executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(3, 4),  # kept open across exec; remap() puts the pipe ends there
                preexec_fn=remap,
            )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # -- protocol ---------------------------------------------------------------------------

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no answer from Chromium in {self.timeout:g}s (log: {self.log_path})")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (log: {self.log_path})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> Any:
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def _wait_event(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        for event in self._events:
            if event.get("method") == method and event.get("sessionId") == session:
                return
        while True:
            message = self._read_message(deadline)
            if "method" in message:
                self._events.append(message)
                if message["method"] == method and message.get("sessionId") == session:
                    return

    # -- pages ------------------------------------------------------------------------------

    def load(
        self,
        path: Path,
        screenshot: Path | None = None,
        expressions: dict[str, str] | None = None,
        width: int = 1280,
        height: int = 900,
    ) -> PageLoad:
        """Open `path`, let it render, read it back; `expressions` are JavaScript evaluated in the
        page (results by value, in `values`)."""
        url = path.resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._events.clear()
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable", None, session)
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session,
            )
            if self.print_media:
                self.call("Emulation.setEmulatedMedia", {"media": "print"}, session)
            self.call("Page.navigate", {"url": url}, session)
            self._wait_event("Page.loadEventFired", session)
            # Two animation frames: layout and paint have happened before we read or shoot.
            self.call(
                "Runtime.evaluate",
                {
                    "expression": "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
                    "awaitPromise": True,
                },
                session,
            )
            result = PageLoad(url)
            result.text = str(self._evaluate("document.body ? document.body.innerText : ''", session))
            result.dom = str(self._evaluate("document.documentElement.outerHTML", session))
            for name, expression in (expressions or {}).items():
                result.values[name] = self._evaluate(expression, session)
            if screenshot is not None:
                metrics = self.call("Page.getLayoutMetrics", None, session)
                size = metrics.get("cssContentSize") or metrics["contentSize"]
                shot = self.call(
                    "Page.captureScreenshot",
                    {
                        "format": "png",
                        "captureBeyondViewport": True,
                        "clip": {
                            "x": 0,
                            "y": 0,
                            "width": size["width"],
                            "height": size["height"],
                            "scale": 1,
                        },
                    },
                    session,
                )
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = screenshot
            self._collect(result, session)
            return result
        finally:
            self.call("Target.closeTarget", {"targetId": target})

    def _evaluate(self, expression: str, session: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def _collect(self, result: PageLoad, session: str) -> None:
        for event in self._events:
            if event.get("sessionId") != session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
                result.console_errors.append(f"console.{params['type']}: {args}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                text = details.get("exception", {}).get("description") or details.get("text", "")
                result.console_errors.append(f"exception: {text}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                result.console_errors.append(
                    f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
                )
            elif method == "Network.requestWillBeSent":
                requested = params.get("request", {}).get("url", "")
                if requested != result.url:
                    result.requests.append(requested)

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (raises ValueError for anything else)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
