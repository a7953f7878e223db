"""The accessibility check the browser tests run on every page and state they visit: axe-core (Deque's
engine, MPL-2.0, vendored as tests/e2e/axe-<version>.min.js) must find no serious or critical violation.

The pages' Content-Security-Policy allows scripts from their own origin only, so axe is neither inlined nor
served by the application: the check evaluates it in the document it is about to look at, through the
DevTools protocol, outside the page's policy, once per document. Not as an init script in every document the
page loads, as before: the browser then compiled axe's half a megabyte on every navigation, checked or not.
Not by routing one address of the live server to the file either: routing turns the browser's HTTP cache
off, so every page fetched its style sheet and scripts again.
"""

from pathlib import Path

AXE_VERSION = "4.14.1"
AXE_FILE = Path(__file__).parent / "e2e" / f"axe-{AXE_VERSION}.min.js"
# What counts: axe's two highest impacts (its others are "moderate" and "minor"), and the rules named here
# whatever impact axe gives them: a role an element may not have (role="alert" on an <article> hides the
# article's own meaning from screen readers, issue 8 item 17; axe rates it "minor").
BLOCKING_IMPACTS = ("serious", "critical")
BLOCKING_RULES = ("aria-allowed-role",)

RUN_AXE = """async ([impacts, rules]) => {
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations.filter((violation) =>
    impacts.includes(violation.impact) || rules.includes(violation.id)).map((violation) =>
    `${violation.id} (${violation.impact}): ${violation.help}; ` +
    violation.nodes.slice(0, 3).map((node) => node.target.join(" ") + " " + node.failureSummary).join(" | "));
}"""


AXE_SOURCE = AXE_FILE.read_text()


def violations(page):
    """axe-core's serious and critical violations on `page` as it is now, and those of BLOCKING_RULES, one
    line each (empty when none).
    Waits for the page to have loaded: until then the browser tests keep it hidden (clients.ACT_ONCE_LOADED),
    and axe passes over what is hidden. Then gives the document axe-core (``window.axe``) unless it has it."""
    page.wait_for_load_state("load")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SOURCE)
    return page.evaluate(RUN_AXE, [list(BLOCKING_IMPACTS), list(BLOCKING_RULES)])


# The visible selects too narrow to show their chosen option's text (a filter squeezed to its arrow on a
# phone, issue 8 item 4): the text measured in the select's own font against its room inside the padding.
SQUEEZED_SELECTS = """() => [...document.querySelectorAll("select")].filter((select) => select.offsetParent !== null)
  .filter((select) => {
    const style = getComputedStyle(select), pen = document.createElement("canvas").getContext("2d");
    pen.font = style.font;
    const text = select.selectedOptions.length ? select.selectedOptions[0].text : "";
    const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    return pen.measureText(text).width > room + 1;
  }).map((select) => select.id || select.name)"""


def screen_problems(page, where, viewport, axe=True):
    """What is wrong with `page` as it is now, each line starting with `where`: scrolling sideways beyond
    `viewport`'s width (a dict with "width", in CSS pixels), a select too narrow to show its chosen option,
    and, unless `axe` is false, axe-core's findings that count (``violations``)."""
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = [f"{where}: {width} px wide at {viewport['width']} px"] if width > viewport["width"] else []
    squeezed = [f"{where}: the select {name} is too narrow to show its choice"
                for name in page.evaluate(SQUEEZED_SELECTS)]
    return wide + squeezed + ([f"{where}: {finding}" for finding in violations(page)] if axe else [])


# The elements shown (not hidden by display, visibility or a closed <details>) on the page as laid out now, by
# their position among the body's elements: what a resize changes besides the layout.
SHOWN_ELEMENTS = """() => [...document.querySelectorAll("body *")].flatMap((element, index) =>
  element.checkVisibility({visibilityProperty: true}) ? [index] : [])"""


def problems_on_screens(page, where, screens):
    """``screen_problems`` of `page` as it is now at each of `screens` (viewport dicts, CSS pixels, narrowest
    first, the first being the one the page has), each line naming the width: the page is resized, not loaded
    again, so a sweep reaches each state once for every screen size. The page is left at the first size.

    The fit is checked at every size; axe-core runs at the narrowest and the widest only (a run costs about a
    tenth of a second of the browser's time, a third of a sweep's). What axe finds depends on the markup, which
    a resize leaves alone, and on what is shown, so an element shown at a size in between and at neither end
    is a problem of its own: axe would not have looked at it."""
    problems, shown = [], []
    for screen in screens:
        page.set_viewport_size(screen)
        at_an_end = screen in (screens[0], screens[-1])
        problems.extend(screen_problems(page, f"{where} at {screen['width']} px", screen, axe=at_an_end))
        shown.append(set(page.evaluate(SHOWN_ELEMENTS)))
    for screen, elements in zip(screens[1:-1], shown[1:-1], strict=True):
        if unchecked := elements - shown[0] - shown[-1]:
            problems.append(f"{where} at {screen['width']} px: {len(unchecked)} elements shown only between the "
                            "narrowest and the widest screen, where axe does not run")
    page.set_viewport_size(screens[0])
    return problems
