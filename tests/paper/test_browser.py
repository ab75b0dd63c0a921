"""The rendered site as a reader meets it: every page and notebook preview of both profiles, opened in
headless Chromium at 1280 px with no network (see `browser.py` for the checks)."""
from __future__ import annotations

import importlib.util
import time

import pytest

from browser import WIDTH, check_site, chromium_paths, skip_or_fail

PAGES = ["index.html", "model.html", "results.html", "gnn-llm-memory.html", "molecules.html"]


@pytest.mark.integration
@pytest.mark.parametrize("profile", ["paper", "default"])
def test_a_reader_finds_nothing_broken(rendered_site, profile: str):
    if importlib.util.find_spec("selenium") is None:
        skip_or_fail("selenium is not installed (pip install selenium)")
    browser, driver = chromium_paths()
    if browser is None or driver is None:
        skip_or_fail("Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    site = rendered_site(profile)
    t0 = time.monotonic()
    reports, problems = check_site(site.path, PAGES)
    print(f"profile {profile}: rendered in {site.seconds:.0f} s, {len(reports)} pages checked at {WIDTH} px in "
          f"{time.monotonic() - t0:.0f} s")
    previews = [url for url in reports if url.endswith("-preview.html")]
    assert len(reports) >= len(PAGES) + 5 and len(previews) >= 5, f"only {sorted(reports)} were reached"
    found = problems + [f"{url}: {p}" for url, r in reports.items() for p in r.problems]
    assert not found, f"{len(found)} problems a reader would meet ({profile}):\n" + "\n".join(found)
