"""The post-render repairs: Quarto's CDN widget loaders go when nothing uses them; table Source links point at
anchors that exist."""
from __future__ import annotations

from pathlib import Path

from paper.postrender import fix_preview_anchors, strip_widget_loaders

LOADERS = (
    '<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js" integrity="x" '
    'crossorigin="anonymous"></script>\n'
    '<script src="https://cdnjs.cloudflare.com/ajax/libs/jquery/3.5.1/jquery.min.js" integrity="y" '
    'crossorigin="anonymous" data-relocate-top="true"></script>\n'
    "<script type=\"application/javascript\">define('jquery', [],function() {return window.jQuery;})</script>\n")


def test_widget_loaders_are_removed_unless_the_page_uses_them():
    page = f"<head>{LOADERS}</head><body><table></table></body>"
    assert "cdnjs" not in strip_widget_loaders(page) and "define(" not in strip_widget_loaders(page)
    widget = f"<head>{LOADERS}</head><body><script>require(['plotly'], function (p) {{}})</script></body>"
    assert strip_widget_loaders(widget) == widget


def test_source_links_point_at_existing_anchors(tmp_path: Path):
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "a-preview.html").write_text('<div id="tbl-x"></div><div id="cell-fig-y"></div>')
    page = tmp_path / "page.html"
    html = ('<a href="nb/a-preview.html#cell-tbl-x">t</a><a href="nb/a-preview.html#cell-fig-y">f</a>'
            '<a href="nb/a-preview.html#cell-gone">g</a>')
    fixed = fix_preview_anchors(html, page)
    assert 'href="nb/a-preview.html#tbl-x"' in fixed and 'href="nb/a-preview.html#cell-fig-y"' in fixed
    assert 'href="nb/a-preview.html#cell-gone"' in fixed
