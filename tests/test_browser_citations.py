"""A point's citations in a real browser (Debian's Chromium, Playwright): each point shows the passages it cites
beside it, as links that carry the passage (where it is from and its text) for hover, and a marker that names no
passage never appears.

The server is the real app (Gradio UI included) in this process over the scripted engine (tests/fakes.py), so
the answer's markers are known: what is checked is the page, not a model."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from sotrag.app.serving.app import create_app
from tests.test_citations_pipeline import QUESTION, pipeline

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"

if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} is not installed (scripts/install.sh installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    _, p = pipeline()
    app = create_app(p.settings, pipeline=p, ui=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_each_point_shows_its_citations_with_the_passage(server_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page: Any = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(server_url + "/", wait_until="domcontentloaded")
        page.wait_for_selector("#sot-status [data-state='ready']")
        page.locator("#sot-mode").get_by_text("Skeleton-of-Thought").click()
        page.fill("#sot-question textarea", QUESTION)
        page.click("#sot-ask")
        page.wait_for_selector("#sot-stats")

        chat = page.locator("#sot-chat .bot, #sot-chat [data-testid='bot']").last
        links = chat.locator("a[href^='#sot-source-']")
        cited = [(links.nth(i).inner_text(), links.nth(i).get_attribute("title")) for i in range(links.count())]
        # point 1 cites [1], point 2 [2], point 3 [1] and [2]: one link per citation, beside its point
        assert [text for text, _ in cited] == ["[1]", "[2]", "[1]", "[2]"], cited
        assert cited[0][1].startswith("security.md > HTTPS: Use HTTPS everywhere")
        assert cited[1][1].startswith("oauth.pdf, p. 3: OAuth2 with password flow")
        text = chat.inner_text()
        assert "[9]" not in text and "[12]" not in text  # markers that name no passage never show
        page.screenshot(path=str(ARTIFACTS / "browser-citations.png"), full_page=True)
        browser.close()
