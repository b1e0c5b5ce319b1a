"""The inspector in headless chromium: log in, open every page on the quickstart tour and a
LangGraph run, click through a lineage graph and a trie, and keep screenshots in build/."""

from __future__ import annotations

from typing import Any

from tests.ui.conftest import ADMIN, SCREENSHOTS

TIMEOUT = 10_000  # ms a page element may take to appear


def shot(page: Any, backend: str, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{backend}-{name}.png"), full_page=True)


def nav(page: Any, label: str) -> None:
    page.locator("#nav").get_by_role("link", name=label, exact=True).click()


def test_pages_in_a_browser(browser: Any, served: Any) -> None:
    backend, server, seeded = served
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    try:
        page.goto(server.url + "/ui")
        page.wait_for_selector("#login-form")
        assert page.locator("#main").inner_text() == ""  # no data before a token
        shot(page, backend, "login")
        page.fill("#token", "not-a-token")
        page.press("#token", "Enter")
        page.wait_for_selector("#login-error:not([hidden])")
        assert "refused" in page.inner_text("#login-error")

        page.fill("#token", ADMIN)
        page.press("#token", "Enter")
        page.wait_for_selector("text=Health")
        assert backend in page.inner_text("#main")
        shot(page, backend, "overview")

        check_threads_and_diff(page, backend, seeded)
        check_langgraph_thread(page, backend, seeded)
        check_outputs_and_lineage(page, backend, seeded)
        check_adaptive_trie(page, backend, seeded)
        check_memory(page, backend)

        page.reload()  # the token survives a reload of the tab (sessionStorage)
        page.wait_for_selector("#items")
        page.click("#logout")
        page.wait_for_selector("#login-form")
        assert page.evaluate("() => sessionStorage.length") == 0
    finally:
        context.close()
    assert urls and not [u for u in urls if ADMIN in u]
    assert ADMIN not in server.log()
    assert "/ui/f/thread" in server.log()  # the access log was on, so the check above means something


def check_threads_and_diff(page: Any, backend: str, seeded: Any) -> None:
    nav(page, "Threads")
    page.wait_for_selector("#threads")
    assert seeded.thread in page.inner_text("#threads")
    page.fill("form.search input[name=q]", "support-chat")
    page.press("form.search input[name=q]", "Enter")
    page.wait_for_url("**/ui/threads?q=support-chat*")
    assert seeded.graph_thread not in page.inner_text("#threads")
    shot(page, backend, "threads")
    page.get_by_role("link", name=seeded.thread).click()
    page.wait_for_selector("#timeline")
    assert page.locator("#timeline tr").count() == 4  # header + 3 checkpoints
    assert "answer" in page.inner_text("#timeline")
    page.locator("#timeline input[name=a]").nth(2).check()  # oldest as A, newest as B
    page.get_by_role("button", name="Diff A → B").click()
    page.wait_for_selector("#changes")
    changes = page.inner_text("#changes")
    assert "$.messages" in changes and "changed" in changes
    shot(page, backend, "diff")


def check_langgraph_thread(page: Any, backend: str, seeded: Any) -> None:
    nav(page, "Threads")
    page.get_by_role("link", name=seeded.graph_thread, exact=True).click()
    page.wait_for_selector("#state")
    text = page.inner_text("#main")
    assert "LangGraph" in text and "Channel values" in text
    assert "thought" in page.inner_text("#state")
    assert "Pending writes (0)" not in text  # the failed turn left act's writes pending
    assert "acted" in page.inner_text("#writes")
    shot(page, backend, "langgraph-thread")


def check_outputs_and_lineage(page: Any, backend: str, seeded: Any) -> None:
    nav(page, "Outputs")
    page.wait_for_selector("table.outputs")
    page.get_by_role("link", name=seeded.planner_ref[:16] + "…").click()
    page.wait_for_selector("#lineage")
    assert page.locator("#lineage a.node").count() >= 4  # planner, 2 researchers, writer, chart
    assert "Lineage of planner" in page.inner_text("#main")
    page.locator(f'#lineage a.node[data-ref="{seeded.writer_ref}"]').click()  # walk down the graph
    page.wait_for_selector("text=Lineage of writer")
    assert page.locator("#lineage a.node.selected").get_attribute("data-ref") == seeded.writer_ref
    page.locator(f'#lineage a.node[data-ref="{seeded.image_ref}"]').click()
    image = page.locator("img.blob[src^='blob:']")
    image.wait_for()
    page.wait_for_timeout(200)  # the object URL decodes
    assert image.evaluate("img => img.naturalWidth") == 1  # the PNG reached the page, decoded
    shot(page, backend, "lineage")


def check_adaptive_trie(page: Any, backend: str, seeded: Any) -> None:
    nav(page, "Adaptive")
    page.get_by_role("link", name=seeded.agent).click()
    page.wait_for_selector("#trie")
    assert "search" in page.inner_text("#plan") and page.locator("#runs tr").count() == 4
    planner = page.locator('#trie details[data-path="[\\"planner\\"]"]')
    planner.locator("summary").click()
    planner.locator("table.predictions").wait_for()
    assert "call 1" in planner.inner_text() and "600" in planner.inner_text()  # interarrival ms
    assert page.locator("figure.window rect").count() == 3  # an ACG window of 3 observations
    shot(page, backend, "adaptive")


def check_memory(page: Any, backend: str) -> None:
    nav(page, "Long-term memory")
    page.wait_for_selector("#namespaces")
    page.locator("#namespaces").get_by_role("link", name="alice").click()
    page.wait_for_selector("text=Items under users / alice")
    assert "likes tea" in page.inner_text("#items") and "bob's secret" not in page.inner_text("#items")
    page.fill("form.search input[name=q]", "lyon")
    page.press("form.search input[name=q]", "Enter")
    page.wait_for_url("**q=lyon*")
    assert "lives in Lyon" in page.inner_text("#items") and "likes tea" not in page.inner_text("#items")
    shot(page, backend, "memory")
