"""The HTML stepper of `Explanation.html()` in a real browser (headless Chromium via Selenium).

Each page is opened offline from a file; the tests check that it logs no console error and
requests nothing but itself, and that next / previous (and the arrow keys) walk every frame with
the frame's gate and wires highlighted on the drawing, the gradients on the wires revealed step
by step, the drawing legible and the current gate in view. Screenshots go to build/screenshots/.
Needs Debian's `chromium` and `chromium-driver`, Selenium from PyPI and Graphviz's `dot`.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import graphdl as gd

from .helpers import NEURON_VALUES, neuron

ROOT = Path(__file__).parents[1]
SHOTS = ROOT / "build" / "screenshots"
MAGENTA = "rgb(209, 0, 143)"  # the stepper's highlight colour (#d1008f)
RED = "#cf222e"  # the drawing's gradient colour

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="Selenium is not installed (pip install selenium)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                "(apt-get install -y chromium chromium-driver)", allow_module_level=True)
if not shutil.which("dot"):
    pytest.skip("Graphviz's dot is missing: the stepper has no drawing to highlight",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1000",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def explanations():
    """(name, explanation): the lecture's circuits the stepper is shown with."""
    sys.path.insert(0, str(ROOT / "examples"))
    import lecture_two_layer
    import word2vec_toy

    f, _ = neuron()
    error = lecture_two_layer.output()
    return [
        ("sigmoid_gates", gd.explain(f, NEURON_VALUES)),
        ("two_layer", gd.explain(error, lecture_two_layer.values, collapse=["sigmoid"])),
        ("word2vec_toy", gd.explain(word2vec_toy.output, word2vec_toy.values,
                                    collapse=["log_sigmoid"])),
    ]


def open_offline(driver, path):
    """Open `path`, and return what it requested beyond itself and the console's errors."""
    driver.get_log("browser"), driver.get_log("performance")  # drop earlier pages' entries
    driver.get(path.as_uri())
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    external = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return external, errors


def state(driver, root):
    """What the stepper `root` shows: the visible frames' indices and the first one's heading,
    the counter, the ids marked highlighted, the colours each highlighted gate is drawn in (its
    outline where it has one, its label's text), the wires whose gradient (the drawing's red
    line) is visible and those where it is highlighted (bold magenta), and whether the gate is
    inside the drawing's visible box."""
    return driver.execute_script("""
        var root = arguments[0], red = arguments[1], magenta = arguments[2];
        var frames = Array.prototype.slice.call(root.querySelectorAll('.frame'));
        var shown = [];
        frames.forEach(function (f, i) { if (f.offsetParent !== null) { shown.push(i); } });
        function ids(cls) {
          return Array.prototype.map.call(root.querySelectorAll('.' + cls),
                                          function (e) { return e.id; }).sort();
        }
        var colours = [];
        Array.prototype.forEach.call(root.querySelectorAll('.hl'), function (g) {
          var outline = g.querySelector('ellipse, polygon');
          if (outline) { colours.push(getComputedStyle(outline).stroke); }
          colours.push(getComputedStyle(g.querySelector('text')).fill);
        });
        var grads = [], fresh = [];
        root.querySelectorAll('g.edge text[fill="' + red + '"]').forEach(function (t) {
          var s = getComputedStyle(t), wire = t.closest('g.edge').id;
          if (s.visibility === 'hidden' || s.display === 'none') { return; }
          grads.push(wire);
          if (s.fill === magenta && parseInt(s.fontWeight, 10) >= 700) { fresh.push(wire); }
        });
        var box = root.querySelector('.drawing').getBoundingClientRect(), inView = true;
        root.querySelectorAll('.hl').forEach(function (g) {
          var r = g.getBoundingClientRect();
          inView = inView && r.left >= box.left && r.right <= box.right && r.top >= box.top &&
                   r.bottom <= box.bottom;
        });
        return {shown: shown, heading: frames[shown[0]].querySelector('h2').textContent,
                counter: root.querySelector('.counter').textContent,
                hl: ids('hl'), edges: ids('hl-edge'), colours: colours,
                grads: grads, fresh: fresh, inView: inView};
    """, root, RED, MAGENTA)


def frame_marks(driver, root):
    """Each frame's gate ids and wire ids that exist on the drawing."""
    return driver.execute_script("""
        var root = arguments[0];
        function present(ids) {
          return (ids || '').split(' ').filter(function (id) {
            return id && root.querySelector('[id="' + id + '"]'); }).sort();
        }
        return Array.prototype.map.call(root.querySelectorAll('.frame'), function (f) {
          return {gate: present(f.dataset.gate), edges: present(f.dataset.edges)};
        });
    """, root)


def gradient_wires(driver, root):
    """The ids of the wires drawn with a gradient."""
    return set(driver.execute_script("""
        return Array.prototype.map.call(
          arguments[0].querySelectorAll('g.edge text[fill="' + arguments[1] + '"]'),
          function (t) { return t.closest('g.edge').id; });
    """, root, RED))


def computed(ex, wires):
    """Per frame, the wires whose gradient it computes: none in the forward pass; in step k those
    into its gate (step 1 also the output's seed ∂f/∂f = 1); in the last frame any left over."""
    out = [set(), *({f"e{t.source.id}_{s.gate.node.id}_{t.position}" for t in s.terms}
                    for s in ex.steps)]
    out[1] |= {f"eout{y.id}" for y in ex.circuit.outputs}
    out = [frame & wires for frame in out]
    return out + [wires - set().union(*out)]


def assert_shows(driver, root, k, marks, new):
    """Frame k is the one shown, its gate and wires highlighted, the gradients of frames up to k
    visible (k's own highlighted), counted as its heading counts."""
    s = state(driver, root)
    assert s["shown"] == [k], f"frame {k + 1}: frames {s['shown']} are visible"
    assert s["hl"] == marks[k]["gate"] and s["edges"] == marks[k]["edges"]
    assert len(s["colours"]) >= len(marks[k]["gate"])
    assert set(s["colours"]) <= {MAGENTA}
    assert set(s["grads"]) == set().union(*new[:k + 1]), f"frame {k + 1}: gradients shown"
    assert set(s["fresh"]) == new[k], f"frame {k + 1}: gradients highlighted"
    label = ("Forward pass" if k == 0 else "Gradients" if k == len(marks) - 1
             else f"Step {k} of {len(marks) - 2}")
    assert s["counter"] == label and s["heading"].startswith(label)  # one numbering
    if len(marks[k]["gate"]) == 1:  # a step's gate, not the gradients' spread of inputs
        assert s["inView"], f"frame {k + 1}: the gate is scrolled out of the drawing's view"


@pytest.mark.parametrize("name, ex", [pytest.param(*case, id=case[0]) for case in explanations()])
def test_stepper_page_walks_every_frame_offline_with_the_gate_highlighted(browser, tmp_path,
                                                                           name, ex):
    page = tmp_path / f"{name}.html"
    ex.html(page)
    external, errors = open_offline(browser, page)
    assert external == [] and errors == []
    root = browser.find_element("css selector", ".gd-stepper")
    marks = frame_marks(browser, root)
    assert len(marks) == len(ex.steps) + 2
    # every backward step's gate is on the drawing, with the wires it sends gradients along
    assert all(len(m["gate"]) == 1 and m["edges"] for m in marks[1:-1])
    wires = gradient_wires(browser, root)
    new = computed(ex, wires)
    assert all(new[1:-1]) and state(browser, root)["grads"] == []  # frame 1 gives nothing away
    nxt, prev = (root.find_element("css selector", b) for b in (".next", ".prev"))
    for k in range(len(marks)):
        assert_shows(browser, root, k, marks, new)
        if k in (0, 1, len(marks) // 2, len(marks) - 1):
            browser.save_screenshot(str(SHOTS / f"{name}_frame{k + 1}.png"))
        nxt.click()
    assert_shows(browser, root, len(marks) - 1, marks, new)  # next stops at the last frame
    assert browser.current_url.endswith("#gradients")
    for k in reversed(range(len(marks) - 1)):
        prev.click()
        assert_shows(browser, root, k, marks, new)
    root.send_keys("\ue014")  # the right arrow key
    assert_shows(browser, root, 1, marks, new)
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.parametrize("name, ex", [pytest.param(*case, id=case[0]) for case in explanations()])
def test_show_all_reveals_every_gradient_and_the_drawing_stays_legible(browser, tmp_path, name,
                                                                      ex):
    page = tmp_path / f"{name}.html"
    ex.html(page)
    browser.get(page.as_uri())
    root = browser.find_element("css selector", ".gd-stepper")
    show_all = root.find_element("css selector", "input.all")
    wires = gradient_wires(browser, root)
    assert state(browser, root)["grads"] == []
    show_all.click()
    assert set(state(browser, root)["grads"]) == wires
    browser.save_screenshot(str(SHOTS / f"{name}_show_all.png"))
    root.find_element("css selector", ".next").click()  # stepping keeps every one shown
    assert set(state(browser, root)["grads"]) == wires
    show_all.click()
    assert set(state(browser, root)["grads"]) == computed(ex, wires)[1]
    # the wires' numbers (11 pt) are drawn at least 11 px high, however wide the network
    px_per_pt = browser.execute_script("""
        var svg = arguments[0].querySelector('.drawing svg');
        return svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;""", root)
    assert 11 * px_per_pt >= 10.9


def test_stepper_page_opens_at_the_frame_in_its_url(browser, tmp_path):
    f, _ = neuron()
    ex = gd.explain(f, NEURON_VALUES)
    page = tmp_path / "steps.html"
    ex.html(page)
    browser.get(page.as_uri() + "#step3")
    root = browser.find_element("css selector", ".gd-stepper")
    assert_shows(browser, root, 3, frame_marks(browser, root),
                 computed(ex, gradient_wires(browser, root)))


def test_window_frames_of_a_pooling_gate_come_one_at_a_time_between_the_steps(browser,
                                                                              tmp_path):
    # The lecture's 4×4 max pooling: its windows after the forward table, their gradients after
    # the pooling gate's step; a window frame shows the gradients of the steps before it only.
    from .test_window_steps import lecture_pool

    _, m, values = lecture_pool("max_pool2d")
    ex = gd.explain(gd.sum(m).named("s"), values)
    page = tmp_path / "pooling.html"
    ex.html(page)
    external, errors = open_offline(browser, page)
    assert external == [] and errors == []
    root = browser.find_element("css selector", ".gd-stepper")
    names = browser.execute_script("""return Array.prototype.map.call(
        arguments[0].querySelectorAll('.frame'), function (f) { return f.dataset.name; });""",
                                   root)
    assert [n for n in names if n.startswith("m-")] == (
        [f"m-forward{i}" for i in range(1, 5)] + [f"m-backward{i}" for i in range(1, 5)])
    steps_done, done = [], 0  # per frame, the steps whose gradients it shows
    for name in names:
        done = int(name[4:]) if name.startswith("step") else done
        steps_done.append(len(ex.steps) + 1 if name == "gradients" else done)
    new = computed(ex, gradient_wires(browser, root))
    nxt = root.find_element("css selector", ".next")
    for k, name in enumerate(names):
        s = state(browser, root)
        assert s["shown"] == [k] and s["heading"].startswith(s["counter"])
        assert set(s["grads"]) == set().union(*new[:steps_done[k] + 1]), f"frame {name}"
        if name in ("m-forward2", "m-backward2"):
            browser.save_screenshot(str(SHOTS / f"pooling_{name}.png"))
        nxt.click()


def test_two_notebook_steppers_of_one_circuit_step_independently(browser, tmp_path):
    # A notebook's outputs share one page: each stepper must find its own frames and gates
    # (the two drawings repeat the same ids), take keys only inside itself, keep the URL.
    f, _ = neuron()
    ex = gd.explain(f, NEURON_VALUES)
    page = tmp_path / "notebook.html"
    page.write_text("<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
                    f"<div>{ex._repr_html_()}</div><div>{ex._repr_html_()}</div></body></html>",
                    encoding="utf-8")
    external, errors = open_offline(browser, page)
    assert external == [] and errors == []
    first, second = browser.find_elements("css selector", ".gd-stepper")
    marks = frame_marks(browser, first)
    new = computed(ex, gradient_wires(browser, first))
    second.find_element("css selector", ".next").click()
    second.find_element("css selector", ".next").click()
    assert_shows(browser, first, 0, marks, new)
    assert_shows(browser, second, 2, marks, new)
    first.send_keys("\ue014")
    browser.find_element("css selector", "body").send_keys("\ue014")  # outside: ignored
    assert_shows(browser, first, 1, marks, new)
    assert_shows(browser, second, 2, marks, new)
    assert "#" not in browser.current_url
    browser.save_screenshot(str(SHOTS / "notebook_two_steppers.png"))
