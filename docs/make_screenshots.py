"""Regenerate the README's pictures: ``python docs/make_screenshots.py``.

Starts JupyterLab on localhost (as ``tests/test_browser.py`` does, with its helpers), runs
``OcclusionWidget()`` in a notebook in Debian's Chromium, and writes

* ``docs/widget.png``: the occlusion view of the sample photograph, top class selected;
* ``docs/widget_compare.png``: the widget down to the compare view (parameter controls left out).

The tests never write into ``docs/``; run this by hand when the widget's look changes, and commit the pictures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from test_browser import chromium, chromium_page, lab_server, open_widget  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs",
                        help="folder for widget.png and widget_compare.png (default: docs/)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, lab_server(Path(work)) as (url, _notebook), chromium() as browser, \
            chromium_page(browser, {"width": 1280, "height": 1300}) as page:
        open_widget(page, url)
        root = page.locator(".ow-root")
        root.scroll_into_view_if_needed()
        page.mouse.move(0, 0)  # no hover read-out, no hover highlight
        page.wait_for_function("() => !document.querySelector('.ow-readout').dataset.value")
        root.screenshot(path=str(args.out / "widget.png"))

        # The compare view for the top class, its four panels and AUCs computed.
        page.locator(".ow-toggle[data-view='compare']").click()
        page.wait_for_function("() => document.querySelectorAll('.ow-compare-card').length === 4", timeout=60_000)
        page.wait_for_selector(".ow-compare[data-status='done']", timeout=180_000)
        page.evaluate("() => { document.querySelector('.ow-controls').style.display = 'none'; }")
        root.scroll_into_view_if_needed()
        page.mouse.move(0, 0)
        root.screenshot(path=str(args.out / "widget_compare.png"))
    print(f"wrote {args.out / 'widget.png'} and {args.out / 'widget_compare.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
