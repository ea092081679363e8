"""Make docs/chat.png, the README's picture of the chat: the real UI on the bundled sample, the
flagship question asked in headless Chromium, and its first citation opened in the viewer.

    .venv/bin/python docs/screenshot.py [--out docs/chat.png]

The sample is indexed into a temporary folder (your default index is left alone). Needs Chromium
at /usr/bin/chromium (`apt-get install chromium`) and Playwright's Python package (the `test` extra).
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's `rag` and `ui`, not an installed copy
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "When was the Brest peace treaty signed?"
# Wide enough for the chat and the sources side by side, as on a laptop.
VIEWPORT = {"width": 1280, "height": 900}
# The README's budget for the picture; a bigger screenshot is reduced to a palette to fit.
MAX_BYTES = 300_000
# Generous: the first question loads the question model on a busy machine.
TIMEOUT_MS = 120_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "chat.png", help="where to save the PNG")
    out = parser.parse_args().out
    if not CHROMIUM.exists():
        print(f"screenshot: error: no Chromium at {CHROMIUM}; install it (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    from rag import SAMPLE_DOCUMENT, Assistant
    from ui.app import PENDING, build_app, launch

    with tempfile.TemporaryDirectory(prefix="rag-screenshot-") as folder:
        assistant = Assistant.build([SAMPLE_DOCUMENT], index_dir=Path(folder) / "index")
        port = _free_port()
        app = launch(build_app(assistant), host="127.0.0.1", port=port, block=False)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
                )
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"http://127.0.0.1:{port}/")
                page.locator("#rag-question textarea").fill(QUESTION)
                page.locator("#rag-ask").click()
                page.wait_for_function(
                    """pending => {
                        const bot = document.querySelector('#rag-chat [data-testid="bot"]');
                        return bot && !bot.innerText.trim().endsWith(pending);
                    }""",
                    arg=PENDING,
                    timeout=TIMEOUT_MS,
                )
                page.locator("#src-1 .rag-open").click()
                page.locator("#rag-viewer mark, #rag-viewer img.rag-page").first.wait_for(timeout=TIMEOUT_MS)
                page.wait_for_timeout(500)  # the viewer scrolls to the citation
                page.evaluate("window.scrollTo(0, 0)")
                picture = page.screenshot(full_page=True)
                browser.close()
        finally:
            app.close()
    out.write_bytes(_within_budget(picture))
    print(f"Saved {out} ({out.stat().st_size / 1000:.0f} KB)")
    return 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _within_budget(png: bytes) -> bytes:
    """The screenshot, reduced to a 256-colour palette when it is over MAX_BYTES (a page of
    text and flat colours looks the same)."""
    if len(png) <= MAX_BYTES:
        return png
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
        buffer, format="PNG", optimize=True
    )
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
