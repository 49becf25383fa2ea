"""The dashboard in a real browser (headless Chromium): every page loads without a console error
or a failed request, asks nothing of any other server, shows the API's numbers, and lets a
keyboard reach the charts' details. With API keys, the key lives in an HttpOnly cookie that only
reads.

Set AGENTPROF_SCREENSHOTS to a folder to save the three pages there at 1280x800 (the README's
screenshots in docs/screenshots are made that way).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import urllib.parse
from dataclasses import dataclass, field

import httpx
import pytest
from playwright.sync_api import Browser, Page

from conftest import READ_KEY, WRITE_KEY, Server, case_steps

VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class Visit:
    page: Page
    problems: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)


def visit(browser: Browser, server: Server, path: str, ready: str | None) -> Visit:
    """Opens `path` in a fresh context and waits until the page marks `ready`; records every
    console error, script error, failed request, 4xx/5xx response and foreign request."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    v = Visit(page)
    origin = server.url
    page.on("console", lambda m: v.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: v.problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: v.problems.append(f"request failed: {r.url} {r.failure}"))

    def on_request(r) -> None:
        v.urls.append(r.url)
        if not (r.url.startswith(origin + "/") or r.url.startswith("data:")):
            v.problems.append(f"request left the server: {r.url}")

    page.on("request", on_request)
    page.on("response", lambda r: v.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(f"{origin}{path}")
    if ready:
        page.wait_for_selector(f"body[data-ready~={ready}]", state="attached", timeout=30_000)
    return v


def resolve(doc: object, pointer: str) -> object:
    """RFC 6901."""
    for raw in pointer.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        doc = doc[int(key)] if isinstance(doc, list) else doc[key]  # type: ignore[index]
    return doc


def decimals(text: str) -> int:
    mantissa = text.split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def check_numbers(page: Page, sources: dict[str, object]) -> int:
    """Every number the page shows with a `data-src` equals the API's value at that pointer:
    exactly in its `value`, and to the shown precision in its text. Returns how many it checked."""
    shown = page.eval_on_selector_all(
        "[data-src]", "els => els.map(e => [e.dataset.src, e.getAttribute('value'), e.textContent])"
    )
    assert shown, "the page shows no numbers from the API"
    for src, value, text in shown:
        name, pointer = src.split(":", 1)
        assert name in sources, f"unknown source {src}"
        expected = resolve(sources[name], pointer)
        if expected is None:
            assert text == "–" and value == "", f"{src}: null shown as {text!r}"
            continue
        assert isinstance(expected, (int, float)), f"{src}: {expected!r} is not a number"
        assert float(value) == float(expected), f"{src}: value {value} != API {expected}"
        if "e" in text:
            tolerance = abs(expected) * 10 ** -decimals(text)
        else:
            tolerance = 0.5 * 10 ** -decimals(text) + 1e-12
        assert math.isclose(float(text), expected, abs_tol=tolerance), f"{src}: shows {text}, API says {expected}"
    return len(shown)


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("AGENTPROF_SCREENSHOTS")
    if folder:
        pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(pathlib.Path(folder) / f"{name}.png"))


def assert_accessible_figures(page: Page) -> None:
    """Each chart is labelled by its caption and has its data as a table beside it."""
    figures = page.eval_on_selector_all(
        "figure",
        """fs => fs.map(f => {
            const svg = f.querySelector('svg[role=img], svg[role=group]');
            const cap = svg && document.getElementById(svg.getAttribute('aria-labelledby') || '');
            return [f.id, !!svg, svg && svg.getAttribute('role'), cap ? cap.textContent : null,
                    !!f.querySelector('details table')];
        })""",
    )
    assert figures
    for fid, has_svg, role, caption, has_table in figures:
        # The timeline's calls can be focused, so it is a group, not an image.
        expected = "group" if fid == "gantt-figure" else "img"
        assert has_svg and role == expected and caption, f"figure {fid} lacks a labelled chart"
        if fid not in ("metrics-figure", "scores-figure"):  # the compare table sits beside those
            assert has_table, f"figure {fid} has no data table"


def test_runs_page(browser: Browser, server: Server) -> None:
    v = visit(browser, server, "/ui", "runs")
    listing = server.get("/v1/runs?limit=25")
    checked = check_numbers(v.page, {"runs": listing})
    assert checked == 5 * len(listing["items"])  # type: ignore[index]
    names = v.page.locator("#runs-table tbody tr th, #runs-table tbody tr td:nth-child(2)").all_inner_texts()
    assert names == [r["name"] for r in listing["items"]]  # type: ignore[index]
    screenshot(v.page, "runs")
    assert v.problems == []


def test_search_by_name(browser: Browser, server: Server) -> None:
    v = visit(browser, server, "/ui", "runs")
    v.page.fill("#name", "CONCURRENT")
    v.page.press("#name", "Enter")
    v.page.wait_for_url(re.compile(r"name=CONCURRENT"))
    v.page.wait_for_selector("body[data-ready~=runs]", state="attached")
    rows = v.page.locator("#runs-table tbody tr")
    assert rows.count() == 1
    assert "realnat_concurrent_16" in rows.inner_text()
    assert v.problems == []


def test_run_page_shows_the_apis_numbers(browser: Browser, server: Server) -> None:
    run_id = server.runs["realnat_concurrent_16"]
    base = f"/v1/runs/{run_id}"
    v = visit(browser, server, f"/ui/runs/{run_id}", "all")
    sources = {
        "run": server.get(base),
        "stats": server.get(f"{base}/stats"),
        "timeline": server.get(f"{base}/timeline?offset=0&limit=20"),
        "profiling": server.get(f"{base}/profiling"),
        "forecast": server.get(f"{base}/forecast"),
        "series": server.get(f"{base}/series"),
    }
    checked = check_numbers(v.page, sources)
    assert checked > 100
    # The Gantt draws one focusable bar per call of the window.
    bars = v.page.locator("#gantt rect[data-call]")
    assert bars.count() == len(sources["timeline"]["calls"])  # type: ignore[index]
    cards = v.page.locator("#cards").inner_text()
    assert "LLM latency p50" in cards and "Throughput" in cards
    # The cost beside the tokens, under the prices the server was started with.
    assert "Cost" in cards and "USD" in cards
    assert v.page.locator('#cards [data-src="stats:/cost/total"]').count() == 1
    assert sources["stats"]["cost"]["total"] > 0  # type: ignore[index]
    links = v.page.eval_on_selector_all("#files a", "as => as.map(a => a.getAttribute('href'))")
    for output in ("metrics", "profiling", "report", "standardized.csv", "gantt.svg", "atif", "prediction_trie", "profiler_results"):
        assert f"{base}/{output}" in links
    for href in links:
        assert httpx.get(f"{server.url}{href}", timeout=60).status_code == 200, href
    assert_accessible_figures(v.page)
    # Hovering over a call shows its details (and makes the screenshot show them).
    calls = sources["timeline"]["calls"]  # type: ignore[index]
    llm = next(i for i, c in enumerate(calls) if c["kind"] == "LLM" and c["output"])
    v.page.hover(f'#gantt rect[data-call="{llm}"]')
    details = v.page.locator("#call-details").inner_text()
    assert calls[llm]["name"] in details and calls[llm]["output"][:20] in details
    screenshot(v.page, "run")
    assert v.problems == []


def test_keyboard_reaches_the_call_details(browser: Browser, server: Server) -> None:
    run_id = server.runs["realnat_concurrent_16"]
    v = visit(browser, server, f"/ui/runs/{run_id}", "all")
    page = v.page
    focused = ""
    for _ in range(60):
        page.keyboard.press("Tab")
        focused = page.evaluate("() => document.activeElement.getAttribute('data-call') || ''")
        if focused:
            break
    assert focused, "Tab never reached a call in the timeline"
    label = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert page.evaluate("() => document.activeElement.getAttribute('role')") == "graphics-symbol"
    details = page.locator("#call-details").inner_text()
    timeline = server.get(f"/v1/runs/{run_id}/timeline?offset=0&limit=20")
    call = timeline["calls"][int(focused)]  # type: ignore[index]
    assert call["name"] in details and call["name"] in label
    assert "Duration" in details
    # The arrow keys move to the next call, whose details follow.
    page.keyboard.press("ArrowRight")
    following = page.evaluate("() => document.activeElement.getAttribute('data-call')")
    assert following == str(int(focused) + 1)
    assert timeline["calls"][int(following)]["name"] in page.locator("#call-details").inner_text()  # type: ignore[index]
    # The charts' tables open from the keyboard too.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.tagName") == "SUMMARY":
            break
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.parentElement.open") is True
    assert v.problems == []


def test_timeline_zooms_and_pages(browser: Browser, server: Server) -> None:
    run_id = server.runs["realnat_concurrent_16"]
    v = visit(browser, server, f"/ui/runs/{run_id}", "all")
    page = v.page
    ticks = lambda: page.eval_on_selector_all(  # noqa: E731
        "#gantt svg g[aria-label='x-axis tick label'] text", "ts => ts.map(t => t.textContent)"
    )
    before = ticks()
    page.click("#zoom-in")
    after = ticks()
    assert after and after != before
    page.click("#zoom-reset")
    assert ticks() == before
    # Drag across a third of the chart.
    box = page.locator("#gantt svg").bounding_box()
    assert box
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y)
    page.mouse.up()
    assert ticks() != before
    assert "Requests 1–16 of 16" in page.locator("#window-label").inner_text()
    assert v.problems == []


def test_compare_from_the_runs_list(browser: Browser, server: Server) -> None:
    v = visit(browser, server, "/ui", "runs")
    page = v.page
    boxes = page.locator("input.pick")
    assert page.locator("#compare-button").is_disabled()
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.click("#compare-button")
    page.wait_for_url(re.compile(r"/ui/compare\?"))
    page.wait_for_selector("body[data-ready~=all]", state="attached")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    baseline, candidate = query["baseline"][0], query["candidate"][0]
    runs = {r["id"]: r for r in server.get("/v1/runs")["items"]}  # type: ignore[index]
    assert runs[baseline]["created_at"] <= runs[candidate]["created_at"]
    comparison = server.post("/v1/compare", {"baseline": baseline, "candidate": candidate})
    checked = check_numbers(
        page,
        {"compare": comparison, "baseline": server.get(f"/v1/runs/{baseline}"), "candidate": server.get(f"/v1/runs/{candidate}")},
    )
    metrics = comparison["metrics"]  # type: ignore[index]
    assert checked >= 2 * len(metrics)
    table_text = page.locator("#metrics").inner_text()
    for name in metrics:
        if not name.startswith("score:"):
            assert name in table_text
    assert "score:accuracy" in page.locator("#scores").inner_text()
    significant = page.locator("#metrics tbody tr .sig-yes").count()
    assert significant == sum(1 for k, m in metrics.items() if m["significant"] and not k.startswith("score:"))
    assert_accessible_figures(page)
    screenshot(page, "compare")
    assert v.problems == []


def test_key_is_kept_in_an_httponly_cookie_that_only_reads(browser: Browser, keyed_server: Server) -> None:
    srv = keyed_server
    v = visit(browser, srv, "/ui", None)
    page = v.page
    page.wait_for_selector("#login:not([hidden])")
    # A wrong key is refused and sets nothing.
    page.fill("#login input[name=key]", "not-a-key")
    page.click("#login button[type=submit]")
    assert "Key not accepted" in page.content()
    assert page.context.cookies() == []
    page.goto(f"{srv.url}/ui")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#login input[name=key]", READ_KEY)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-ready~=runs]", state="attached")
    assert page.locator("#runs-table tbody tr").count() == 1
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("() => document.cookie") == ""
    assert all(READ_KEY not in u and WRITE_KEY not in u for u in v.urls)
    # The run page works with the cookie alone.
    run_id = srv.runs["realnat_react_12"]
    page.goto(f"{srv.url}/ui/runs/{run_id}")
    page.wait_for_selector("body[data-ready~=all]", state="attached")
    # Even a write key in the cookie cannot write.
    page.goto(f"{srv.url}/ui")
    page.context.clear_cookies()
    page.reload()
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#login input[name=key]", WRITE_KEY)
    page.click("#login button[type=submit]")
    page.wait_for_selector("body[data-ready~=runs]", state="attached")
    status = page.evaluate(
        """async () => (await fetch('/v1/runs', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                               body: JSON.stringify({name: 'via-cookie'})})).status"""
    )
    assert status == 403
    assert json.dumps(srv.get("/v1/runs")).count("via-cookie") == 0
    page.click("text=Forget key")
    page.wait_for_selector("#login:not([hidden])")
    assert page.context.cookies() == []


def test_pages_need_no_key_and_show_no_data_without_one(keyed_server: Server) -> None:
    for path in ("/ui", f"/ui/runs/{keyed_server.runs['realnat_react_12']}", "/ui/compare", "/ui/assets/run.js"):
        resp = httpx.get(f"{keyed_server.url}{path}")
        assert resp.status_code == 200, path
    page = httpx.get(f"{keyed_server.url}/ui")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "realnat" not in page.text
    assert httpx.get(f"{keyed_server.url}/v1/runs").status_code == 401


@pytest.mark.parametrize("path", ["/ui/compare", "/ui/runs/00000000-0000-0000-0000-000000000000"])
def test_missing_input_is_explained(browser: Browser, server: Server, path: str) -> None:
    v = visit(browser, server, path, None)
    page = v.page
    if path == "/ui/compare":
        page.wait_for_selector("body[data-ready~=all]", state="attached")
        assert "Pick two runs" in page.locator("#runs-compared").inner_text()
        assert v.problems == []
    else:
        page.wait_for_selector("#errors:not([hidden])")
        assert "not found" in page.locator("#errors").inner_text().lower()


def test_run_with_analyses_off_still_renders(browser: Browser, server: Server) -> None:
    """An aiq-1.1 run whose config turns the optional analyses off: each section says so."""
    created = server.post(
        "/v1/runs",
        {
            "name": "analyses off",
            "toolkit": "aiq-1.1",
            "profiler_config": {
                "token_usage_forecast": False,
                "bottleneck_analysis": {"enable_simple_stack": False, "enable_nested_stack": False},
                "concurrency_spike_analysis": {"enable": False},
                "prefix_span_analysis": {"enable": False},
            },
            "requests": json.loads(case_steps("small_5")),
        },
    )
    run_id = created["id"]  # type: ignore[index]
    v = visit(browser, server, f"/ui/runs/{run_id}", "all")
    page = v.page
    assert "off in this run's profiler config" in page.locator("#bottlenecks").inner_text()
    assert "off in this run's profiler config" in page.locator("#patterns").inner_text()
    assert "Not fitted" in page.locator("#forecast").inner_text()
    assert page.locator("#files a[href$=prediction_trie]").count() == 0
    base = f"/v1/runs/{run_id}"
    check_numbers(page, {"run": server.get(base), "stats": server.get(f"{base}/stats"),
                         "timeline": server.get(f"{base}/timeline?offset=0&limit=20"),
                         "profiling": server.get(f"{base}/profiling"), "forecast": server.get(f"{base}/forecast"),
                         "series": server.get(f"{base}/series")})
    assert v.problems == []


def shifted(name: str, last_at: float, offset: int) -> list[dict]:
    """A case's requests with their times moved so the last step is at `last_at`, numbered (or
    their eval ids suffixed) by `offset`."""
    requests = json.loads(case_steps(name))
    last = max(s["payload"]["event_timestamp"] for r in requests for s in r["intermediate_steps"])
    for r in requests:
        if "request_number" in r:
            r["request_number"] += offset
        else:  # an eval item: its id names the request
            r["id"] = f"{r['id']}+{offset}"
        for s in r["intermediate_steps"]:
            p = s["payload"]
            p["event_timestamp"] += last_at - last
            if p.get("span_event_timestamp") is not None:
                p["span_event_timestamp"] += last_at - last
    return requests


def test_a_live_run_opens_on_its_last_hour(browser: Browser, server: Server) -> None:
    """A run still receiving traffic opens on the last hour, refreshing itself, with trends from
    its rollups; the whole run is a click away, and no panel fails either way."""
    import time as clock

    now = clock.time()
    requests = shifted("realnat_concurrent_16", now - 3 * 3600, 0) + shifted("realnat_concurrent_16", now - 30, 100)
    run_id = server.post("/v1/runs", {"name": "live service", "requests": requests})["id"]  # type: ignore[index]
    v = visit(browser, server, f"/ui/runs/{run_id}", "all")
    page = v.page
    assert page.locator("input[name=range][value='3600']").is_checked()
    assert page.locator("#auto-refresh").is_checked()
    assert "range=3600" in page.url
    # The page asked for the last hour only: the recent copy's 16 requests, not the old ones.
    asked = [u for u in v.urls if "/series" in u]
    query = urllib.parse.parse_qs(urllib.parse.urlparse(asked[-1]).query)
    base = f"/v1/runs/{run_id}"
    window = f"from={query['from'][0]}"
    sources = {
        "run": server.get(base),
        "stats": server.get(f"{base}/stats?{window}"),
        "timeline": server.get(f"{base}/timeline?offset=0&limit=20&{window}"),
        "profiling": server.get(f"{base}/profiling?{window}"),
        "forecast": server.get(f"{base}/forecast?{window}"),
        "series": server.get(f"{base}/series?{window}"),
    }
    assert sources["timeline"]["requests"] == 16  # type: ignore[index]
    assert check_numbers(page, sources) > 50
    assert "Requests in this range" in page.locator("#cards").inner_text()
    assert page.locator("#trends figure[id^=trend-] svg[role=img]").count() == 3
    assert page.locator("p.status.error").count() == 0 and page.locator("#errors").is_hidden()
    assert_accessible_figures(page)
    # The whole run: every request, and still no failed panel.
    page.check("input[name=range][value=all]")
    page.click("#range-form button[type=submit]")
    page.wait_for_selector("body[data-loads='2']", state="attached", timeout=30_000)
    assert "Showing the whole run" in page.locator("#range-label").inner_text()
    assert page.locator("p.status.error").count() == 0 and page.locator("#errors").is_hidden()
    whole = server.get(f"{base}/series")
    assert sum(b["requests"] for b in whole["buckets"]) == 32  # type: ignore[index]
    screenshot(page, "live")
    assert v.problems == []
