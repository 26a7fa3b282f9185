"""The web UI in a real browser: Debian's Chromium driven by Playwright, against a real ``sotrag serve``.

A user uploads a document in the Documents tab and finds it in the list, then asks a question and watches
Skeleton-of-Thought happen: the skeleton appears first, then every point fills in and is marked done; the
stats panel, the timeline (one bar per point) and the sources (as text, never HTML) appear. The page must log
no console errors. Screenshots go to tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving import ServerProcess, run_server

pytestmark = [pytest.mark.engine, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS = Path(__file__).parent / "data" / "retrieval_docs"
DONE, PENDING = "✓", "○"
# Document text that would be markup if it were rendered as HTML: it must show as text.
TRICKY = "Rose pests\n\nAphids on roses: spray water. <b id='injected-markup'>bold</b> <i>it</i> **stars**\n"

if shutil.which(CHROMIUM) is None:
    pytest.skip(f"{CHROMIUM} is not installed (scripts/install.sh installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

RECORD_CHAT = """
() => {
  window.__chat = [];
  const target = document.querySelector('#sot-chat');
  const record = () => {
    const bots = target.querySelectorAll('.bot, [data-testid="bot"]');
    const last = bots.length ? bots[bots.length - 1] : null;
    window.__chat.push(last ? last.innerText : '');
  };
  new MutationObserver(record).observe(target, {subtree: true, childList: true, characterData: true});
}
"""


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    work = tmp_path_factory.mktemp("serve-ui")
    with run_server(tiny_model_dir, work, index_dir=work / "index") as s:
        yield s


@pytest.fixture(scope="module")
def page(server: ServerProcess) -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        pg = browser.new_page(viewport={"width": 1400, "height": 1100})
        pg.console_errors = []
        pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
        pg.on("pageerror", lambda e: pg.console_errors.append(f"page error: {e}"))
        pg.set_default_timeout(120_000)
        pg.goto(server.url + "/", wait_until="domcontentloaded")
        pg.wait_for_selector("#sot-question textarea")
        pg.wait_for_selector("#sot-status [data-state='ready']")
        yield pg
        browser.close()


def test_upload_a_document_and_find_it_in_the_list(page: Any, tmp_path: Path) -> None:
    tricky = tmp_path / "rose-pests.txt"
    tricky.write_text(TRICKY)
    page.get_by_role("tab", name="Documents").click()
    page.set_input_files("#sot-upload input[type=file]", [str(DOCS / "garden" / "roses.md"), str(tricky)])
    page.wait_for_selector("#sot-upload [aria-label='rose-pests.txt']")  # both files reached the page
    page.wait_for_selector("#sot-upload [aria-label='roses.md']")
    page.click("#sot-add")
    page.wait_for_selector("#sot-doc-status >> text=added")
    table = page.locator("#sot-documents")
    sync_api.expect(table).to_contain_text("rose-pests.txt")
    sync_api.expect(table).to_contain_text("roses.md")
    sync_api.expect(table).to_contain_text("Caring for Roses")
    page.wait_for_selector("#sot-status >> text=2 documents")
    page.screenshot(path=str(ARTIFACTS / "browser-documents.png"), full_page=True)
    assert page.console_errors == []


def test_ask_and_watch_the_skeleton_then_the_points(page: Any) -> None:
    page.get_by_role("tab", name="Ask").click()
    page.locator("#sot-mode").get_by_text("Skeleton-of-Thought").click()  # auto would ask the router
    page.evaluate(RECORD_CHAT)
    page.fill("#sot-question textarea", "How do I keep my roses healthy? <b id='injected-markup'>aphids</b>")
    page.click("#sot-ask")

    stats = page.wait_for_selector("#sot-stats")
    n = int(stats.get_attribute("data-points"))
    assert 3 <= n <= 4
    assert stats.get_attribute("data-mode") == "sot"
    assert stats.get_attribute("data-grounded") == "true"
    for label in ("time to first token", "skeleton", "expansion", "total", "tokens/s", "prefix-cache share"):
        assert label in stats.inner_text()

    # Every point is on the page and marked done; none is still pending.
    final = page.locator("#sot-chat .bot, #sot-chat [data-testid='bot']").last.inner_text()
    assert final.count(DONE) == n and PENDING not in final
    for i in range(1, n + 1):
        assert f"{i}. " in final

    # The user saw the skeleton before the points were done: an earlier state of the answer listed the
    # skeleton (while it was written, or with every point still pending) and no point was done yet.
    snapshots: list[str] = page.evaluate("window.__chat")
    skeleton_first = [s for s in snapshots if ("Skeleton" in s or PENDING in s) and DONE not in s]
    assert skeleton_first, snapshots[-5:]
    assert any(s.count(PENDING) == n and DONE not in s for s in snapshots) or any("Skeleton" in s for s in snapshots)

    # The timeline: a skeleton bar, then one bar per point, on one time axis.
    timeline = page.wait_for_selector("#sot-timeline")
    assert page.locator("#sot-timeline .tl-skeleton").count() == 1
    assert page.locator("#sot-timeline .tl-point").count() == n

    # Sources are listed, and document text is shown as text, never rendered as HTML.
    sources = page.locator("#sot-sources")
    sync_api.expect(sources).to_contain_text("roses.md")
    sync_api.expect(sources).to_contain_text("<b id='injected-markup'>bold</b>")  # the document's markup, as text
    sync_api.expect(page.locator("#sot-chat")).to_contain_text("<b id='injected-markup'>aphids</b>")
    assert page.locator("#injected-markup").count() == 0  # neither the question nor the document became HTML
    assert timeline.is_visible()
    page.screenshot(path=str(ARTIFACTS / "browser-answer.png"), full_page=True)
    assert page.console_errors == []


def test_compare_runs_normal_decoding_and_shows_the_speedup(page: Any) -> None:
    page.get_by_role("tab", name="Ask").click()
    page.get_by_label("Compare: also run the other mode and show the speed-up").check()
    page.get_by_label("Skeleton-of-Thought").check()
    page.fill("#sot-question textarea", "What should I feed roses?")
    page.click("#sot-ask")
    speedup = page.wait_for_selector("#sot-speedup")
    assert float(speedup.get_attribute("data-speedup")) > 0
    compare = page.locator("#sot-compare").inner_text()
    assert "Skeleton-of-Thought" in compare and "normal decoding" in compare
    page.screenshot(path=str(ARTIFACTS / "browser-compare.png"), full_page=True)
    assert page.console_errors == []
