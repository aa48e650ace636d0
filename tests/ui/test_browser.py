"""The run browser in a real headless chromium: every page type loads without console errors and draws; the
lineage tree has the run's nodes; a candidate opens on its diff; each plot has one trace per curve."""

from __future__ import annotations

import time

import pytest
from autotts_graph.graph.run_view import build_candidate_view, build_run_view
from autotts_graph.store import history
from autotts_graph.store.ledger import RunLedger
from PIL import Image
from ui_server import Server


def not_blank(path) -> bool:
    """A screenshot with real content: many colours, and most of it not the page's background."""
    image = Image.open(path).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    background = max(colours)[0] / (image.width * image.height) if colours else 1.0
    return len(colours) > 50 and background < 0.97


def shot(browser, tmp_path, name: str) -> None:
    path = browser.screenshot(tmp_path / f"{name}.png")
    assert not_blank(path), f"{name}.png is blank"


def traces_of(driver, plot_id: str) -> list[str]:
    return driver.execute_script("return document.getElementById(arguments[0]).data.map(t => t.name)", plot_id)


def test_the_runs_page(browser, server, finished_run, tmp_path):
    _, run_id, _ = finished_run
    driver = browser.open(server.url + "/")
    assert browser.console_errors() == []
    rows = driver.find_elements("css selector", "table.runs tbody tr")
    assert [r.get_attribute("data-run") for r in rows] == [run_id]
    assert rows[0].find_element("css selector", '[data-field="status"]').text == "done"
    shot(browser, tmp_path, "runs")


def test_the_run_page_draws_fitness_curves_archive_and_the_winners_lineage(browser, server, finished_run, tmp_path):
    store, run_id, _ = finished_run
    view = build_run_view(store, run_id)
    driver = browser.open(f"{server.url}/runs/{run_id}")
    assert browser.console_errors() == []
    # One trace per curve on every accuracy-vs-tokens plot: the winner, then each baseline.
    curves = [view.search.winner.title, *[b.title for b in view.search.baselines]]
    plots = [p.get_attribute("id") for p in driver.find_elements("css selector", "#curves div.plot")]
    assert plots == ["search-mean", "search-m1/search", "search-m2/search"]
    for plot in plots:
        assert traces_of(driver, plot) == curves
    held = [p.get_attribute("id") for p in driver.find_elements("css selector", "#heldout div.plot")]
    assert held == ["heldout-m1/heldout"] and traces_of(driver, held[0]) == curves
    assert "after selection" in driver.find_element("css selector", "#heldout h2").text
    assert len(traces_of(driver, "fitness-plot")) == 4
    # The winner's lineage: its ancestors, root first, and nothing else.
    nodes = driver.find_elements("css selector", f'#lineage ol.lineage[data-of="{view.run.best_candidate}"] li.node')
    assert [n.get_attribute("data-candidate") for n in nodes] == view.ancestors(view.run.best_candidate)
    cells = driver.find_elements("css selector", "#archive td.cell.has-elite")
    assert len(cells) == sum(1 for c in view.cells if c.elite)
    shot(browser, tmp_path, "run")


def test_choosing_a_candidate_shows_its_lineage_and_clicking_it_opens_its_diff(browser, server, finished_run,
                                                                                 tmp_path):
    store, run_id, _ = finished_run
    view = build_run_view(store, run_id)
    child = next(c for c in reversed(view.candidates) if c.parent and c.candidate_id in view.search_curves)
    driver = browser.open(f"{server.url}/runs/{run_id}")
    driver.find_element("css selector", f'input[name="show"][value="{child.candidate_id}"]').click()
    browser.follow(driver.find_element("xpath", "//button[contains(., 'Plot and trace')]").click,
                   lambda url: f"show={child.candidate_id}" in url)
    assert f"show={child.candidate_id}" in driver.current_url and browser.console_errors() == []
    tree = driver.find_element("css selector", f'ol.lineage[data-of="{child.candidate_id}"]')
    nodes = tree.find_elements("css selector", "li.node")
    assert [n.get_attribute("data-candidate") for n in nodes] == view.ancestors(child.candidate_id)
    edge = tree.find_element("css selector", f'li.node[data-candidate="{child.candidate_id}"] .edge')
    assert edge.get_attribute("data-parent") == child.parent
    # The chosen candidate joins the winner on every plot: still one trace per curve.
    assert traces_of(driver, "search-mean")[:2] == [view.search.winner.title, child.title]
    # Click it in the tree: its page, with the diff against its parent.
    link = tree.find_element("css selector", f'li.node[data-candidate="{child.candidate_id}"] a.cand-link')
    browser.follow(link.click, lambda url: url.endswith(f"/candidates/{child.candidate_id}"))
    assert driver.current_url.endswith(f"/runs/{run_id}/candidates/{child.candidate_id}")
    assert browser.console_errors() == []
    cv = build_candidate_view(store, view, child.candidate_id)
    diff = driver.find_element("css selector", "#diff .diff")
    assert diff.is_displayed()
    assert len(diff.find_elements("css selector", ".d-add")) == cv.added > 0
    assert len(diff.find_elements("css selector", ".d-del")) == cv.removed
    assert child.parent in driver.find_element("css selector", "#diff").text
    assert driver.find_element("css selector", "#source .code").text.count("\n") >= child.source.count("\n")
    shot(browser, tmp_path, "candidate")


def test_the_compare_page_plots_and_tabulates_the_chosen(browser, server, finished_run, tmp_path):
    store, run_id, _ = finished_run
    view = build_run_view(store, run_id)
    others = [c for c in view.search_curves if c != view.run.best_candidate][:1]
    chosen = [view.run.best_candidate, *others]
    query = "&".join([*(f"c={c}" for c in chosen), "b=cmc", "b=sc"])
    driver = browser.open(f"{server.url}/runs/{run_id}/compare?{query}")
    assert browser.console_errors() == []
    titles = [view.candidate(c).title for c in chosen] + ["CMC", "SC@k"]
    for plot in driver.find_elements("css selector", "div.plot"):
        assert traces_of(driver, plot.get_attribute("id")) == titles
    intervals = driver.find_element("css selector", "#intervals").text
    assert "95% bootstrap interval" in intervals and "CMC" in intervals
    assert len(driver.find_elements("css selector", "#intervals table.verdicts")) >= 1
    shot(browser, tmp_path, "compare")


def test_a_missing_page_is_a_404_with_a_link_back(browser, server, finished_run, tmp_path):
    _, run_id, _ = finished_run
    driver = browser.open(f"{server.url}/runs/{run_id}/candidates/cand-nope")
    errors = browser.console_errors()
    assert len(errors) == 1 and "404" in errors[0]  # the page's own status, nothing else
    assert "no candidate" in driver.find_element("css selector", "p.detail").text
    shot(browser, tmp_path, "not_found")
    browser.follow(driver.find_element("id", "back").click, lambda url: url == f"{server.url}/runs/{run_id}")
    assert driver.current_url == f"{server.url}/runs/{run_id}" and browser.console_errors() == []


def test_a_run_in_progress_updates_while_it_runs(browser, store_copy, tmp_path):
    store, run_id = store_copy
    ledger = RunLedger(store, run_id)
    ledger.resume()  # the run is writing again
    srv = Server(store.path)
    try:
        driver = browser.open(srv.url + "/")
        cell = driver.find_element("css selector", f'tr[data-run="{run_id}"] [data-field="candidates"]')
        assert cell.text == "9"
        cand = history.candidates(store, run_id)[-1]
        ledger.add_candidate(cand.model_copy(update={"candidate_id": "cand-live", "round": 3, "slot": 0}))
        deadline = time.monotonic() + 30
        while cell.text != "10":  # the page polls; no reload
            assert time.monotonic() < deadline, "the runs page did not update"
            time.sleep(0.3)
        assert driver.find_element("css selector", f'tr[data-run="{run_id}"] [data-field="generations"]').text == "4"
        # The run page reloads itself with the new candidate once the store changed.
        driver = browser.open(f"{srv.url}/runs/{run_id}")
        assert driver.find_element("css selector", "body").get_attribute("data-live")
        ledger.add_candidate(cand.model_copy(update={"candidate_id": "cand-live2", "round": 3, "slot": 1}))
        deadline = time.monotonic() + 30
        while not driver.find_elements("css selector", 'tr[data-candidate="cand-live2"]'):
            assert time.monotonic() < deadline, "the run page did not update"
            time.sleep(0.3)
        assert browser.console_errors() == []
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _drained(browser):
    browser.console_errors()  # each test reads only its own pages' console
