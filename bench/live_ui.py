"""The dashboard's run page on a big run, in headless Chromium: how long until every section is
drawn, with the server's caches cold and warm, whether any panel failed, and which range the
page settled on.

Usage: python bench/live_ui.py BASE_URL RUN_ID [VISITS] > report.md
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright


def visit(browser, url: str) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    problems: list[str] = []
    # The page's first analysis may be a 413 naming the window that fits (expected: it narrows).
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "413" not in m.text else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 and r.status != 413 else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready~=all]", state="attached", timeout=120_000)
    marks = page.evaluate(
        "() => Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"
    )
    failed = page.locator("main p.status.error").all_inner_texts()
    label = page.locator("#range-label").inner_text()
    context.close()
    return {"summary_ms": marks["agentprof:summary"], "all_ms": marks["agentprof:all"], "failed": failed,
            "problems": problems, "range": label}


def main() -> None:
    base, run = sys.argv[1], sys.argv[2]
    visits = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        print("| visit | summary drawn (s) | every section drawn (s) | failed panels | problems |")
        print("|---|---|---|---|---|")
        label = ""
        for i in range(visits):
            r = visit(browser, f"{base}/ui/runs/{run}")
            label = r["range"]
            print(f"| {'cold' if i == 0 else 'warm'} | {r['summary_ms'] / 1000:.2f} | {r['all_ms'] / 1000:.2f} | "
                  f"{len(r['failed'])} {'; '.join(r['failed'])} | {len(r['problems'])} {'; '.join(r['problems'][:3])} |")
        print()
        print(f"Range the page settled on: {label}")
        browser.close()


if __name__ == "__main__":
    main()
