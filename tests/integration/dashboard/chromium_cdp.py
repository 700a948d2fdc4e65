"""A minimal headless-Chromium driver over the Chrome DevTools Protocol (CDP), using `websockets`.

Only what the dashboard's browser test needs: open a page, evaluate JavaScript, wait for a
condition, take a PNG screenshot, and record console errors, exceptions and every network
request the page makes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

# Flags for a root, offline, headless run (see .library/env/machines/python.md).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _port_written(port_file: Path) -> bool:
    return port_file.exists() and bool(port_file.read_text().strip())


class CdpError(RuntimeError):
    pass


class Browser:
    def __init__(self, executable: str, workdir: Path, width: int = 1440, height: int = 1000):
        self.executable = executable
        self.workdir = workdir
        self.width = width
        self.height = height
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: Any = None
        self._ids = itertools.count(1)
        self.console_errors: list[str] = []
        self.exceptions: list[str] = []
        self.requests: list[str] = []

    def _launch(self, profile: Path) -> subprocess.Popen[bytes]:
        profile.mkdir(parents=True, exist_ok=True)
        with (self.workdir / "chromium.log").open("wb") as log:
            return subprocess.Popen(
                [
                    self.executable,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    "--remote-debugging-port=0",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self) -> None:
        profile = self.workdir / "profile"
        self.proc = await asyncio.to_thread(self._launch, profile)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not await asyncio.to_thread(_port_written, port_file):
            if self.proc.poll() is not None:
                raise CdpError(f"chromium exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise CdpError(f"chromium did not open its DevTools port: {self.log_tail()}")
            await asyncio.sleep(0.05)
        port = int((await asyncio.to_thread(port_file.read_text)).split()[0])
        async with httpx.AsyncClient(timeout=10) as client:
            targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await websockets.connect(page["webSocketDebuggerUrl"], max_size=None)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.call(f"{domain}.enable")
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def log_tail(self) -> str:
        path = self.workdir / "chromium.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def _on_event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.exceptions.append(
                details.get("exception", {}).get("description") or details.get("text", "?")
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry.get('source')}: {entry.get('text')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            self.requests.append(params["url"])

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        await self.ws.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("id") == request_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._on_event(message)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, within: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or expression}")
            await asyncio.sleep(0.1)

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'", what="page load")

    async def screenshot(self, path: Path) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(path.write_bytes, data)
        return data

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 10)
