"""The accessibility check the browser tests run on every page and state they visit: axe-core (Deque's
engine, MPL-2.0, vendored as tests/e2e/axe-<version>.min.js) must find no serious or critical violation.

The pages' Content-Security-Policy allows scripts from their own origin only, so axe is not inlined: the
browser is told to answer one address of the live server with the vendored file (Playwright's routing,
in the test only; the application has no such route), and the page loads it like its own scripts.
"""

from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_FILE = Path(__file__).parent / "e2e" / f"axe-{AXE_VERSION}.min.js"
AXE_PATH = f"/__tests__/axe-{AXE_VERSION}.min.js"
# What counts: axe's two highest impacts (its others are "moderate" and "minor").
BLOCKING_IMPACTS = ("serious", "critical")

RUN_AXE = """async (impacts) => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.filter((violation) => impacts.includes(violation.impact)).map((violation) =>
    `${violation.id} (${violation.impact}): ${violation.help}; ` +
    violation.nodes.slice(0, 3).map((node) => node.target.join(" ") + " " + node.failureSummary).join(" | "));
}"""


def serve_axe(page, live_server):
    """Have `page` answer AXE_PATH on `live_server` with the vendored axe-core, from now on."""
    page.route(f"{live_server}{AXE_PATH}", lambda route: route.fulfill(
        status=200, content_type="text/javascript", body=AXE_FILE.read_text()))


def violations(page, live_server):
    """axe-core's serious and critical violations on `page` as it is now, one line each (empty when none).
    Needs ``serve_axe`` first."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=f"{live_server}{AXE_PATH}")
    return page.evaluate(RUN_AXE, list(BLOCKING_IMPACTS))
