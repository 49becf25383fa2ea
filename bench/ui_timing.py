"""How long the run page of a big run takes to become usable in headless Chromium.

Opens /ui/runs/{id} for each run id given (each a separate copy of the same run, so every first
visit finds the server's caches cold), then once more per run (warm), and reads the page's own
performance marks: `agentprof:summary` (the summary cards and the timeline drawn: the page is
usable) and `agentprof:all` (every section drawn), both from the start of navigation.

Usage: python bench/ui_timing.py BASE_URL RUN_ID... > report.md
"""

from __future__ import annotations

import statistics
import sys

from playwright.sync_api import sync_playwright


def measure(browser, url: str) -> tuple[float, float]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready~=all]", state="attached", timeout=60_000)
    marks = page.evaluate(
        "() => Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"
    )
    context.close()
    if errors:
        raise SystemExit(f"console errors on {url}: {errors}")
    return marks["agentprof:summary"], marks["agentprof:all"]


def main() -> None:
    base, runs = sys.argv[1], sys.argv[2:]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        # The browser's own start-up. Each visit below has a fresh context (an empty browser
        # cache), so it also loads and compiles the scripts: a first visit.
        warm_up = browser.new_page()
        warm_up.goto(f"{base}/ui")
        warm_up.wait_for_selector("body[data-ready~=runs]", state="attached")
        warm_up.close()
        rows = {"cold": [], "warm": []}
        for run in runs:
            rows["cold"].append(measure(browser, f"{base}/ui/runs/{run}"))
            rows["warm"].append(measure(browser, f"{base}/ui/runs/{run}"))
        browser.close()
    print("| server cache | visits | usable (summary + timeline), median [min–max] ms | all sections, median [min–max] ms |")
    print("|---|---|---|---|")
    for kind, xs in rows.items():
        usable = [u for u, _ in xs]
        done = [a for _, a in xs]
        fmt = lambda v: f"{statistics.median(v):.0f} [{min(v):.0f}–{max(v):.0f}]"  # noqa: E731
        print(f"| {kind} | {len(xs)} | {fmt(usable)} | {fmt(done)} |")


if __name__ == "__main__":
    main()
