"""Quarto post-render hook: two repairs of Quarto 1.7's output, run as a script after a render of the site.

- Quarto adds require.js and jQuery from a CDN to every page that embeds a notebook with an HTML output (it
  assumes the output may be a JavaScript widget). The site's HTML outputs are static tables, so the tags only
  cost a failed download and a "define is not defined" error offline; they are removed from every page that
  uses neither require.js nor jQuery otherwise.
- The "Source" link under an embedded table points at `<notebook>-preview.html#cell-<label>`, an anchor the
  preview lacks for table cells (it has `#<label>`); such links are pointed at the anchor that exists.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

CDN_TAGS = re.compile(
    r'[ \t]*<script src="https://cdnjs\.cloudflare\.com/ajax/libs/(?:require\.js|jquery)/[^"]*"[^>]*></script>\n?'
    r"|[ \t]*<script type=\"application/javascript\">define\('jquery', \[\],function\(\) "
    r"\{return window\.jQuery;\}\)</script>\n?")
USES_LOADER = re.compile(r"\brequire\s*\(\s*\[|\brequirejs\b|\$\(|jQuery\(")


def strip_widget_loaders(html: str) -> str:
    """`html` without Quarto's CDN require.js/jQuery tags, unless the page itself calls require.js or jQuery."""
    stripped = CDN_TAGS.sub("", html)
    return html if USES_LOADER.search(stripped) else stripped


PREVIEW_LINK = re.compile(r'href="([^"#]*-preview\.html)#cell-([^"]+)"')
IDS = re.compile(r'\bid="([^"]+)"')


def fix_preview_anchors(html: str, page: Path) -> str:
    """Point `...-preview.html#cell-X` links of `page` at `#X` where the preview has no `cell-X` but has `X`."""
    def repair(m: re.Match) -> str:
        preview = (page.parent / m.group(1)).resolve()
        if not preview.is_file():
            return m.group(0)
        ids = set(IDS.findall(preview.read_text(encoding="utf-8")))
        if f"cell-{m.group(2)}" not in ids and m.group(2) in ids:
            return f'href="{m.group(1)}#{m.group(2)}"'
        return m.group(0)

    return PREVIEW_LINK.sub(repair, html)


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root / "lib"))
    from common.io import write_text

    out_dir = Path(os.environ.get("QUARTO_PROJECT_OUTPUT_DIR", root / "_site"))
    if not out_dir.is_absolute():
        out_dir = root / out_dir
    for page in sorted(out_dir.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        fixed = fix_preview_anchors(strip_widget_loaders(html), page)
        if fixed != html:
            write_text(page, fixed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
