"""A real headless Chromium, driven over the DevTools protocol on a pipe (no extra package): load a
page, collect what its console and network report, check its images and sounds, screenshot it."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--remote-debugging-pipe",
         "--hide-scrollbars", "--mute-audio")
# what the page is asked once loaded: images that failed, sounds that cannot play
CHECK_MEDIA = """(async () => {
  const images = [...document.images];
  const broken = images.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const sounds = [...document.querySelectorAll('audio')];
  await Promise.all(sounds.map(a => a.readyState >= 1 || a.error ? null : new Promise(done => {
    a.addEventListener('loadedmetadata', done); a.addEventListener('error', done); setTimeout(done, 10000); })));
  return JSON.stringify({images: images.length, broken: broken, sounds: sounds.length,
    silent: sounds.filter(a => a.error || !(a.duration > 0)).length,
    height: document.documentElement.scrollHeight});
})()"""


def executable() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, width: int = 1200):
        self.profile = tempfile.mkdtemp(prefix="closedloop-chromium-")
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()

        def fds_3_and_4():  # Chromium reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [executable(), *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds_3_and_4, close_fds=False)
        os.close(to_chrome)
        os.close(from_chrome)
        self.buffer, self.events, self.next_id = b"", [], 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)

    def call(self, method: str, session: bool = False, timeout: float = 60.0, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def wait_for(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for k, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(k)
            self.events.append(self._receive(deadline))

    def open(self, url: str) -> dict:
        """Load the page; returns its errors, media and a full-page PNG screenshot (bytes)."""
        self.events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")
        media = json.loads(self.call("Runtime.evaluate", session=True, expression=CHECK_MEDIA, awaitPromise=True,
                                     returnByValue=True)["result"]["value"])
        shot = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True,
                         clip={"x": 0, "y": 0, "width": 1200, "height": min(media["height"], 12000), "scale": 1})
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                errors.append(f"console.{params['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                                       for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                errors.append(f"log: {params['entry']['text']}")
        return {"errors": errors, "media": media, "png": base64.b64decode(shot["data"])}

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._read)
        os.close(self._write)
        shutil.rmtree(self.profile, ignore_errors=True)
