"""Drives headless Chromium through the web viewer, for tests/cli.rs.

Usage: browser.py CHROMIUM BASE_URL OUT_DIR

Talks the DevTools protocol over --remote-debugging-pipe (file descriptors 3 and 4, messages
ended by NUL), so it needs nothing beyond Python and Chromium. It opens the runs list, follows
the first run, its samples, applies a filter with the form, opens the first sample, presses
"j" to go to the next one, takes a screenshot, and prints one JSON object with what it saw,
including every console message, exception and security-policy report.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

browser, base, out_dir = sys.argv[1:4]
profile = tempfile.mkdtemp()
to_chrome_read, to_chrome_write = os.pipe()
from_chrome_read, from_chrome_write = os.pipe()


def plumb():
    os.dup2(to_chrome_read, 3)
    os.dup2(from_chrome_write, 4)


chrome = subprocess.Popen(
    [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--remote-debugging-pipe", "--user-data-dir=" + profile, "--window-size=1400,1000",
        "about:blank",
    ],
    pass_fds=(3, 4), preexec_fn=plumb, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
)
os.close(to_chrome_read)
os.close(from_chrome_write)
writer = os.fdopen(to_chrome_write, "wb")
reader = os.fdopen(from_chrome_read, "rb")
events = []
next_id = 0
buffer = b""
deadline = time.time() + 90


def receive():
    global buffer
    while b"\0" not in buffer:
        if time.time() > deadline:
            raise TimeoutError("browser did not answer")
        chunk = os.read(reader.fileno(), 65536)
        if not chunk:
            raise EOFError("browser closed the pipe")
        buffer += chunk
    message, buffer = buffer.split(b"\0", 1)
    return json.loads(message)


def call(method, params=None, session=None):
    global next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params or {}}
    if session:
        message["sessionId"] = session
    writer.write(json.dumps(message).encode() + b"\0")
    writer.flush()
    while True:
        reply = receive()
        if reply.get("id") == next_id:
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply["result"]
        events.append(reply)


target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
for domain in ("Page", "Runtime", "Log"):
    call(domain + ".enable", session=session)


def evaluate(expression):
    result = call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                  session=session)
    return result["result"].get("value")


def settle(previous):
    """Waits until the page has left `previous` and finished loading. An evaluation that
    lands while the page navigates is refused by the browser ("Inspected target navigated or
    closed", seen on a loaded machine): that is a page still loading, so ask again."""
    while time.time() < deadline:
        try:
            href = evaluate("location.href")
            if href != previous and evaluate("document.readyState") == "complete":
                return href
        except RuntimeError as error:
            if "navigated or closed" not in str(error):
                raise
        time.sleep(0.05)
    raise TimeoutError("page did not load")


def follow(action):
    before = evaluate("location.href")
    evaluate(action)
    return settle(before)


seen = {}
call("Page.navigate", {"url": base}, session=session)
seen["runs_url"] = settle("about:blank")
seen["runs_title"] = evaluate("document.title")
seen["run_url"] = follow("document.querySelector('#runs a').click()")
seen["metrics_rows"] = evaluate("document.querySelectorAll('#metrics tr').length")
seen["samples_url"] = follow("document.getElementById('samples').click()")
seen["count_before"] = evaluate("document.getElementById('count').textContent")
seen["filtered_url"] = follow(
    "document.querySelector('select[name=answer]').value = 'full_compliance';"
    "document.getElementById('apply').click()")
seen["count_after"] = evaluate("document.getElementById('count').textContent")
seen["sample_url"] = follow("document.querySelector('#samples a').click()")
seen["sample_heading"] = evaluate("document.getElementById('sample').textContent")
seen["sample_answer"] = evaluate(
    "(document.getElementById('answer-text') || {textContent: null}).textContent")
seen["sample_trace"] = evaluate(
    "(document.getElementById('trace-text') || {textContent: null}).textContent")
seen["verdict_rows"] = evaluate("document.querySelectorAll('#verdicts tr').length")
before = evaluate("location.href")
for kind in ("keyDown", "keyUp"):
    call("Input.dispatchKeyEvent",
         {"type": kind, "key": "j", "code": "KeyJ", "text": "j" if kind == "keyDown" else "",
          "windowsVirtualKeyCode": 74}, session=session)
seen["after_j_url"] = settle(before)
seen["after_j_heading"] = evaluate("document.getElementById('sample').textContent")
shot = call("Page.captureScreenshot", {"format": "png"}, session=session)
with open(os.path.join(out_dir, "sample.png"), "wb") as file:
    file.write(base64.b64decode(shot["data"]))
seen["titles_intact"] = evaluate("document.title.indexOf('pwned') < 0")
seen["injected_elements"] = evaluate(
    "document.querySelectorAll('img, script:not([src=\"/nav.js\"]), b').length")
seen["problems"] = [
    event for event in events
    if event.get("method") in ("Runtime.consoleAPICalled", "Runtime.exceptionThrown",
                               "Log.entryAdded")
]
chrome.kill()
print(json.dumps(seen))
