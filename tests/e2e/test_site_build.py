"""The course's website, built as `python -m nox -s site` builds it, then read in a real browser.

The build (Sphinx, warnings as errors) runs every lab's demo once, minutes on 2 cores the first time and
seconds afterwards (the figures are cached in build/site-cache/). Then Debian's Chromium, headless and
driven over the DevTools protocol, opens the pages from a server on 127.0.0.1 and reads what a reader
would see; its screenshots are kept in build/site-screenshots/ (CI keeps them as an artifact).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from course import labs
from course.staff import site as site_mod
from course.staff import sitecheck

pytestmark = pytest.mark.solutions_only
ROOT = labs.root()
SCREENSHOTS = ROOT / "build" / "site-screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
    "--window-size=1280,900",
]


@pytest.fixture(scope="module")
def built():
    """The site, built with the course's own defaults: build/site/, its cache in build/site-cache/."""
    figures = site_mod.demo_figures(ROOT / site_mod.CACHE / "figures")
    lab_list = site_mod.labs_of(figures)
    out = site_mod.build(site_mod.OUT, check=False)  # the checks are the tests below, one by one
    return out, lab_list


def test_every_lab_has_its_page_with_its_figures(built):
    out, lab_list = built
    assert [lab.id for lab in lab_list] == list(labs.lab_files("labs"))
    assert all(lab.figures for lab in lab_list)
    assert sitecheck.figure_problems(out, lab_list) == []


def test_no_line_of_solution_code_anywhere(built):
    out, _ = built
    lines = sitecheck.distinctive_lines(published=site_mod.published_sources())
    assert len(lines) >= 50, "too few distinctive solution lines to mean anything"
    assert sitecheck.leak_problems(out, lines) == []


def test_every_link_and_anchor_resolves_and_nothing_loads_from_outside(built):
    out, lab_list = built
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.html"))
    for page in ["index.html", "arc.html", "search.html", *(f"{lab.page}.html" for lab in lab_list)]:
        assert page in pages
    for doc in site_mod.DOC_PAGES:
        assert doc.removesuffix(".md") + ".html" in pages
    assert sitecheck.link_problems(out) == []


# ---------------------------------------------------------------------------------------------------
# in Chromium


class Browser:
    """One headless Chromium and one tab, over the DevTools protocol (websocket-client)."""

    def __init__(self, profile: Path):
        import websocket

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            tab = next(t for t in json.load(answer) if t["type"] == "page")
        self.ws = websocket.create_connection(tab["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def send(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == method for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")

    def open(self, url: str) -> None:
        self.events = []
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def errors(self) -> list[str]:
        """The console's errors, uncaught exceptions and failed loads since the page was opened."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif method == "Network.loadingFailed" and not p.get("canceled"):
                found.append(f"failed to load: {p.get('errorText')}")
            elif method == "Network.responseReceived" and p["response"]["status"] >= 400:
                found.append(f"HTTP {p['response']['status']}: {p['response']['url']}")
        return found

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(built):
    """The built site over HTTP on 127.0.0.1 (a free port), as GitHub Pages serves it."""
    out, _ = built
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no Chromium on this machine: `apt-get install chromium` (Debian's package) for the browser tests")
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


# Every image loaded, lazy or not: each is scrolled into view and awaited, then the page goes back to its top.
IMAGES = """(async () => {
  const imgs = [...document.images];
  for (const img of imgs) { img.loading = "eager"; img.scrollIntoView(); }
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
  window.scrollTo(0, 0);
  return imgs.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
})()"""
# Maths: MathJax typeset every formula Sphinx marked (span.math, div.math), with no TeX error.
MATHS = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const marked = [...document.querySelectorAll(".math")];
  return {marked: marked.length, typeset: marked.filter(m => m.querySelector("mjx-container")).length,
          errors: document.querySelectorAll("mjx-merror").length};
})()"""


def _read(browser: Browser, base: str, page: str) -> dict:
    """Open one page and say what a reader gets: errors, images, maths, and every address it loaded."""
    browser.open(f"{base}/{page}")
    images, maths = browser.js(IMAGES), browser.js(MATHS)
    time.sleep(0.2)  # the last console messages and network events of the page
    browser.js("1")
    outside = [
        u for u in browser.requests() if urlsplit(u).scheme in ("http", "https") and urlsplit(u).hostname != "127.0.0.1"
    ]
    return {"errors": browser.errors(), "images": images, "maths": maths, "outside": outside}


def _check_page(seen: dict, page: str, *, maths: bool) -> None:
    assert seen["errors"] == [], f"{page}: {seen['errors']}"
    assert seen["outside"] == [], f"{page} loaded from outside the site: {seen['outside']}"
    blank = [i["src"] for i in seen["images"] if not i["width"]]
    assert not blank, f"{page}: images not loaded: {blank}"
    m = seen["maths"]
    assert m["errors"] == 0 and m["typeset"] == m["marked"], f"{page}: maths {m}"
    if maths:
        assert m["marked"] > 0, f"{page} shows no maths"


def test_home_page_in_chromium(built, served, browser):
    _, lab_list = built
    seen = _read(browser, served, "index.html")
    _check_page(seen, "index.html", maths=False)
    assert len(seen["images"]) >= len(lab_list), "a card per lab, each with its figure"
    hrefs = browser.js("[...document.querySelectorAll('a')].map(a => a.getAttribute('href'))")
    assert all(any(h and h.endswith(f"{lab.page}.html") for h in hrefs) for lab in lab_list)
    browser.screenshot(SCREENSHOTS / "home.png")
    browser.js("document.querySelector('.sd-card').scrollIntoView(); window.scrollBy(0, -80); 1")
    time.sleep(0.3)
    browser.screenshot(SCREENSHOTS / "home-labs.png")


def test_every_lab_page_in_chromium(built, served, browser):
    _, lab_list = built
    for lab in lab_list:
        seen = _read(browser, served, f"{lab.page}.html")
        _check_page(seen, lab.page, maths=lab == lab_list[0])  # every lab's maths typeset; lab 01 has some
        assert len([i for i in seen["images"] if "/_images/" in i["src"]]) >= len(lab.figures), lab.id
        links = browser.js("[...document.querySelectorAll('a')].map(a => a.href)")
        for start in ("https://colab.research.google.com/github/", "https://mybinder.org/v2/gh/"):
            assert any(h.startswith(start) and h.endswith(f"{lab.stem}.ipynb") for h in links), (lab.id, start)
        if lab == lab_list[0]:
            browser.screenshot(SCREENSHOTS / f"{lab.stem}-top.png")
            browser.js("document.querySelector('figure img').scrollIntoView(); window.scrollBy(0, -120); 1")
            time.sleep(0.3)
            browser.screenshot(SCREENSHOTS / f"{lab.stem}-figures.png")


def test_the_arc_in_chromium(built, served, browser):
    _, lab_list = built
    seen = _read(browser, served, "arc.html")
    _check_page(seen, "arc.html", maths=True)
    assert len(seen["images"]) >= len(lab_list)
    browser.screenshot(SCREENSHOTS / "arc.png")


def test_search_finds_a_lab_by_a_word_of_its_title(built, served, browser):
    _, lab_list = built
    lab = lab_list[0]
    word = max(re.findall(r"[A-Za-z]{4,}", lab.heading), key=len)  # "perceptron" for "Lab 01 — the perceptron"
    browser.open(f"{served}/search.html?q={word}")
    found, deadline = [], time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        found = browser.js("[...document.querySelectorAll('#search-results a')].map(a => a.href)")
        time.sleep(0.2)
    assert browser.errors() == []
    assert any(urlsplit(h).path.endswith(f"/{lab.page}.html") for h in found), (word, found)
    browser.screenshot(SCREENSHOTS / "search.png")
