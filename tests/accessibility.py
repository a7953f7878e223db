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

# null when the document has no axe yet (``violations`` gives it and asks again).
RUN_AXE = """async ([impacts, rules]) => {
  if (typeof axe === "undefined") return null;
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
    for _ in range(3):  # a document the page moved on to meanwhile has no axe either: it gets it in turn
        found = page.evaluate(RUN_AXE, [list(BLOCKING_IMPACTS), list(BLOCKING_RULES)])
        if found is not None:
            return found
        page.evaluate(AXE_SOURCE)
    raise AssertionError(f"axe-core could not be run on {page.url}: the page kept changing")


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


# How many elements the body holds, and the shown ones (not hidden by display, visibility or a closed <details>)
# by their position among them, each with its colours: what a resize may change besides the layout.
SCREEN_STATE = """() => {
  const elements = [...document.querySelectorAll("body *")];
  return [elements.length, elements.flatMap((element, index) => {
    if (!element.checkVisibility({visibilityProperty: true})) return [];
    const style = getComputedStyle(element);
    return [[index, `${style.color} on ${style.backgroundColor}`]];
  })];
}"""


def _covered(between, narrowest, widest):
    """Whether axe at the narrowest and the widest screen looked at all it would look at in `between`
    (SCREEN_STATE answers): the same elements, none shown that the narrowest hides (where the text is smallest
    and contrast is held to the stricter ratio), each in the colours it has at one end."""
    if not between[0] == narrowest[0] == widest[0]:
        return False  # the page changed meanwhile: nothing can be said
    at_narrowest, at_widest = dict(map(tuple, narrowest[1])), dict(map(tuple, widest[1]))
    return all(index in at_narrowest and colours in (at_narrowest[index], at_widest.get(index))
               for index, colours in between[1])


def problems_on_screens(page, where, screens):
    """``screen_problems`` of `page` as it is now at each of `screens` (viewport dicts, CSS pixels, narrowest
    first, the first being the one the page has), each line naming the width: the page is resized, not loaded
    again, so a sweep reaches each state once for every screen size. The page is left at the first size.

    The fit is checked at every size. axe-core (about a tenth of a second of the browser's time a run, a third
    of a sweep's) runs at the narrowest and the widest, and at a size in between only when what it would look
    at there is not covered by those two (``_covered``): something shown there that the narrowest hides, a
    colour of its own, or a page that changed meanwhile."""
    assert list(screens) == sorted(screens, key=lambda screen: screen["width"]), "screens go narrowest first"
    problems, states = [], {}
    for screen in [screens[0], *screens[-1:0:-1]]:  # both ends first: what is in between is compared with them
        page.set_viewport_size(screen)
        states[screen["width"]] = state = page.evaluate(SCREEN_STATE)
        at_an_end = screen in (screens[0], screens[-1])
        needs_axe = at_an_end or not _covered(state, states[screens[0]["width"]], states[screens[-1]["width"]])
        problems.extend(screen_problems(page, f"{where} at {screen['width']} px", screen, axe=needs_axe))
    page.set_viewport_size(screens[0])
    return problems
