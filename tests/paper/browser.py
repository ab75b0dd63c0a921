"""A reader's checks of a rendered site, in headless Chromium: every page and notebook preview is opened at
1280 px and checked for broken local links, images and #anchors, console errors (JavaScript, or a resource that
did not load: the browser can reach nothing but the site itself), elements wider than the text column, pages
wider than the window, text hidden behind a horizontal scroll, figures shrunk below legibility and equations
left as TeX source.
"""
from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest

WIDTH, HEIGHT = 1280, 900
MIN_IMAGE_SCALE = 0.6
"""A figure shown below this fraction of its natural size has its 10 pt labels under about 9 px."""
MIN_DIAGRAM_FONT_PX = 9.0

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
"""Headless, and no name resolves except the local server: a page that needs the network fails its checks."""


def skip_or_fail(reason: str) -> None:
    """Skip a site test whose tools are missing, or fail it where CI provides them (SITE_TESTS_REQUIRED=1)."""
    if os.environ.get("SITE_TESTS_REQUIRED"):
        pytest.fail(f"{reason} (SITE_TESTS_REQUIRED is set: .ci/run provides Quarto and Chromium)")
    pytest.skip(reason)


def chromium_paths() -> tuple[str | None, str | None]:
    """(chromium, chromedriver) executables on PATH, None where missing."""
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    return browser, shutil.which("chromedriver")


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site quietly and records the paths it could not serve."""

    missing: list[str]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        return

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if code == 404 and not self.path.endswith("/favicon.ico"):
            self.missing.append(self.path)
        super().send_error(code, message, explain)


@contextmanager
def serve(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve `directory` on a free local port; yields (base URL, list of paths that were not found)."""
    missing: list[str] = []
    handler = functools.partial(type("Handler", (_Handler,), {"missing": missing}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", missing
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def browser() -> Iterator["object"]:
    """A headless Chromium driven by chromedriver (selenium), with its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")
    binary, driver_path = chromium_paths()
    profile_dir = tempfile.mkdtemp(prefix="chromium-")
    options = Options()
    if binary:
        options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_window_size(WIDTH, HEIGHT)
        driver.set_page_load_timeout(60)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile_dir, ignore_errors=True)


# Run in the page: everything a reader would notice, as plain data.
INSPECT = r"""
const main = document.querySelector('main') || document.body;
const col = main.getBoundingClientRect();
const describe = (el) => {
  const id = el.id || (el.closest('[id]') || {}).id || '';
  return `${el.tagName.toLowerCase()}${el.className && typeof el.className === 'string' ? '.' +
    el.className.trim().split(/\s+/).slice(0, 2).join('.') : ''}${id ? ' in #' + id : ''}`;
};
const wide = [], scrolled = [], small = [], tex = [], broken = [];
for (const el of main.querySelectorAll('table, figure, img, pre, svg, .cell-output, .cell-output-display, .callout, div.sourceCode, .gt_table')) {
  if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;
  const r = el.getBoundingClientRect();
  if (r.width > 0 && r.right > col.right + 1) wide.push(`${describe(el)}: right edge ${Math.round(r.right)} px, column ends at ${Math.round(col.right)} px`);
}
for (const el of main.querySelectorAll('*')) {
  const s = getComputedStyle(el);
  if (['auto', 'scroll', 'hidden'].includes(s.overflowX) && el.scrollWidth > el.clientWidth + 2 && el.clientWidth > 0)
    scrolled.push(`${describe(el)}: ${el.scrollWidth} px of content in ${el.clientWidth} px`);
}
for (const img of document.images) {
  if (!img.complete || img.naturalWidth === 0) { broken.push(img.getAttribute('src')); continue; }
  if (main.contains(img) && img.naturalWidth > 200 && img.getBoundingClientRect().width / img.naturalWidth < MIN_SCALE)
    small.push(`${img.getAttribute('src')}: shown at ${Math.round(100 * img.getBoundingClientRect().width / img.naturalWidth)}% of its size`);
}
for (const svg of main.querySelectorAll('.cell svg, pre.mermaid svg, .mermaid svg, svg[id^="mermaid"]')) {
  const vb = svg.viewBox && svg.viewBox.baseVal;
  const r = svg.getBoundingClientRect();
  if (!vb || !vb.width || !r.width) continue;
  const scale = r.width / vb.width;
  let least = Infinity;
  for (const t of svg.querySelectorAll('text, foreignObject div, foreignObject span')) {
    const px = parseFloat(getComputedStyle(t).fontSize) * scale;
    if (t.textContent.trim() && px < least) least = px;
  }
  if (least < MIN_FONT) small.push(`diagram ${describe(svg)}: smallest label ${least.toFixed(1)} px`);
}
const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
const texLike = /\\[a-zA-Z]{2,}|\$[^$\s][^$]*\$|\\\(|\\\[/;
while (walker.nextNode()) {
  const node = walker.currentNode;
  const parent = node.parentElement;
  if (!parent || parent.closest('pre, code, script, style, math, .sourceCode, svg, textarea')) continue;
  if (!parent.checkVisibility || parent.checkVisibility()) {
    const m = node.textContent.match(texLike);
    if (m) tex.push(`"${node.textContent.trim().slice(0, 80)}"`);
  }
}
const ids = [...document.querySelectorAll('[id]')].map(e => e.id).concat(
  [...document.querySelectorAll('a[name]')].map(e => e.getAttribute('name')));
const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
const resources = [...document.querySelectorAll('img[src], script[src], link[href][rel~="stylesheet"]')]
  .map(e => e.src || e.href);
return {
  ids, links, resources, wide, scrolled, small, tex, broken,
  pageWidth: document.documentElement.scrollWidth, windowWidth: document.documentElement.clientWidth,
};
""".replace("MIN_SCALE", str(MIN_IMAGE_SCALE)).replace("MIN_FONT", str(MIN_DIAGRAM_FONT_PX))

WAIT_FOR_DIAGRAMS = """
const pending = [...document.querySelectorAll('pre.mermaid, .mermaid')].filter(e => !e.querySelector('svg'));
return document.readyState === 'complete' && pending.length === 0;
"""


@dataclass
class PageReport:
    """What a reader meets on one page: the problems found and the page's links and ids."""

    url: str
    problems: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)


def inspect_page(driver, url: str) -> PageReport:
    """Open `url`, let scripts and diagrams finish, and collect the reader's problems on it."""
    driver.get_log("browser")
    driver.get(url)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not driver.execute_script(WAIT_FOR_DIAGRAMS):
        time.sleep(0.2)
    time.sleep(0.5)
    data = driver.execute_script(INSPECT)
    report = PageReport(url, links=data["links"], ids=set(data["ids"]))
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE" and "favicon.ico" not in entry["message"]:
            report.problems.append(f"console: {entry['message']}")
    if data["pageWidth"] > data["windowWidth"]:
        report.problems.append(f"page is {data['pageWidth']} px wide in a {data['windowWidth']} px window")
    report.problems += [f"wider than the text column: {w}" for w in data["wide"]]
    report.problems += [f"behind a horizontal scroll: {w}" for w in data["scrolled"]]
    report.problems += [f"too small to read: {w}" for w in data["small"]]
    report.problems += [f"TeX source left in the text: {t}" for t in data["tex"]]
    report.problems += [f"image did not load: {src}" for src in data["broken"]]
    report.problems += [f"resource from outside the site: {r}" for r in data["resources"]
                        if urlparse(r).hostname not in (None, "127.0.0.1")]
    return report


def local_page(base: str, link: str) -> tuple[str, str] | None:
    """(page URL without fragment, fragment) of a link into the site, None for links leaving it."""
    if not link.startswith(base):
        return None
    page, fragment = urldefrag(link)
    return page, unquote(fragment)


def check_site(site_dir: Path, start_pages: list[str]) -> tuple[dict[str, PageReport], list[str]]:
    """Open `start_pages` (paths relative to `site_dir`) and every site page they link to; returns the report
    of each page and the site-wide problems (missing files, broken #anchors)."""
    reports: dict[str, PageReport] = {}
    problems: list[str] = []
    with serve(site_dir) as (base, missing), browser() as driver:
        todo = [urljoin(base, p) for p in start_pages]
        while todo:
            url = todo.pop(0)
            if url in reports:
                continue
            path = site_dir / unquote(urlparse(url).path.lstrip("/"))
            if not path.is_file():
                reports[url] = PageReport(url, problems=["page does not exist"])
                continue
            reports[url] = report = inspect_page(driver, url)
            for link in report.links:
                target = local_page(base, link)
                if target and target[0].endswith(".html") and target[0] not in reports:
                    todo.append(target[0])
        for url, report in reports.items():
            for link in report.links:
                target = local_page(base, link)
                if target is None:
                    continue
                page, fragment = target
                file = site_dir / unquote(urlparse(page).path.lstrip("/"))
                if urlparse(page).path.endswith("/"):
                    file = file / "index.html"
                if not file.exists():
                    problems.append(f"{url}: link to a missing file {page}")
                elif fragment and page in reports and fragment not in reports[page].ids:
                    problems.append(f"{url}: link to a missing anchor {page}#{fragment}")
        problems += [f"not found on the server: {p}" for p in sorted(set(missing))]
    return reports, problems
