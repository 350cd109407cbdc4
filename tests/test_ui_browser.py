"""The MLflow UI over a store after two `pdflow train` runs, checked in headless Chromium.

One `mlflow server` (started by `flows.ui.serving_ui`, as `pdflow ui` starts it) and one
Selenium session serve every test of this module. Expected values come from MlflowClient; what
is checked is the page the browser rendered. Each test saves a screenshot of its page in its
output folder; with PDFLOW_UI_SCREENSHOTS=<dir> set, also in <dir> (`PDFLOW_UI_SCREENSHOTS=docs`
refreshes the README's docs/registry-model.png and docs/registry-compare.png).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from flows.ui import serving_ui

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("two_trainings")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
BROWSER_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
)
NO_BROWSER = (
    "Debian's chromium and chromium-driver are needed: apt-get install chromium chromium-driver"
)
WAIT_S = 60
SCROLL_STEP_PX = 200
NAME = "pdflow-pd"  # the experiment's and the registered model's name
METRIC = "oot_auc"
SCREENSHOTS_ENV = "PDFLOW_UI_SCREENSHOTS"
PARENT_TAG = "mlflow.parentRunId"

Page = Callable[[str, str], WebDriver]
Condition = Callable[[WebDriver], Any]


@dataclass(frozen=True)
class Expected:
    """What MlflowClient says the store holds."""

    experiment_id: str
    run_ids: list[str]  # the trainings' (parent) runs, oldest first
    run_count: int  # with their child runs
    metric: dict[str, float]  # run id -> oot_auc
    versions: list[str]
    aliases: dict[str, str]  # alias -> version
    plots: list[str]  # file names under the newest run's plots/


def ui_metric(value: float) -> str:
    """A metric as the UI's Utils.formatMetric writes it, for 0.001 <= |value| < 10 (an AUC):
    JavaScript's Math.round to three decimals, then Number.toString."""
    assert 0.001 <= abs(value) < 10, value
    return format(math.floor(value * 1e3 + 0.5) / 1e3, "g")


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """Debian's browser and driver; the tests skip without them, except in CI (env CI set),
    where they fail. Session-scoped, so a skip comes before the trainings are run."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        reason = f"{NO_BROWSER} ({', '.join(missing)} not found)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def expected(chromium: tuple[Path, Path], two_trainings: Any) -> Expected:
    from mlflow import MlflowClient

    client = MlflowClient(two_trainings.tracking_uri)
    experiment = client.get_experiment_by_name(NAME)
    assert experiment is not None, f"no experiment {NAME} in {two_trainings.tracking_uri}"
    every_run = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )
    # One parent run per training; its trials, candidates and baselines are child runs.
    runs = [run for run in every_run if PARENT_TAG not in run.data.tags]
    newest = runs[-1].info.run_id
    return Expected(
        experiment_id=experiment.experiment_id,
        run_ids=[run.info.run_id for run in runs],
        run_count=len(every_run),
        metric={run.info.run_id: run.data.metrics[METRIC] for run in runs},
        versions=[str(v.version) for v in client.search_model_versions(f"name = '{NAME}'")],
        aliases={
            alias: str(version)
            for alias, version in client.get_registered_model(NAME).aliases.items()
        },
        plots=[Path(item.path).name for item in client.list_artifacts(newest, "plots")],
    )


@pytest.fixture(scope="module")
def ui_url(
    expected: Expected, two_trainings: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The UI's address, served by `serving_ui` (the server's log: server.log beside it)."""
    log_path = tmp_path_factory.mktemp("ui-server") / "server.log"
    with log_path.open("wb") as log, serving_ui(two_trainings.tracking_uri, output=log) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser(chromium: tuple[Path, Path], ui_url: str) -> Iterator[WebDriver]:
    """One headless Chromium session, on the UI's "Model training" side, assistant closed."""
    binary, driver_path = chromium
    options = Options()
    options.binary_location = str(binary)
    for argument in BROWSER_ARGS:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    try:
        open_page(driver, ui_url, "#/")
        prepare_ui(driver)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver, ui_url: str, tmp_path: Path) -> Iterator[Page]:
    """Opens a route of the UI; each page is screenshotted when the test ends, passed or not."""
    shots: list[str] = []

    def open_route(route: str, name: str) -> WebDriver:
        open_page(browser, ui_url, route)
        shots.append(name)
        return browser

    yield open_route
    for name in shots:
        screenshot(browser, tmp_path, name)


def open_page(driver: WebDriver, ui_url: str, route: str) -> None:
    """Load the UI afresh at `route` (a new hash alone would keep the last page's state)."""
    driver.get("about:blank")
    driver.get(f"{ui_url}/{route}")


def screenshot(driver: WebDriver, folder: Path, name: str) -> Path:
    """Save the page as <folder>/<name>.png, and copy it to $PDFLOW_UI_SCREENSHOTS if set."""
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    if target := os.environ.get(SCREENSHOTS_ENV):
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)
    return path


def wait_for(driver: WebDriver, condition: Condition, what: str) -> Any:
    """The condition's first truthy value, polled for up to WAIT_S; fails naming `what`."""
    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(
        condition, f"the UI did not show {what} within {WAIT_S} s"
    )


def xpath_literal(text: str) -> str:
    assert "'" not in text, text
    return f"'{text}'"


def find_all(driver: WebDriver | WebElement, xpath: str) -> list[WebElement]:
    return driver.find_elements("xpath", xpath)


def visible(xpath: str) -> Condition:
    """A wait condition: the first displayed element at `xpath`."""

    def condition(driver: WebDriver) -> WebElement | None:
        return next((e for e in find_all(driver, xpath) if e.is_displayed()), None)

    return condition


def prepare_ui(driver: WebDriver) -> None:
    """Switch the sidebar to "Model training" and close the assistant panel (both the UI's
    own settings, kept by the browser), so pages show runs and models at full width."""
    toggle = "//div[@role='button'][normalize-space()='Model training']"
    driver.execute_script("arguments[0].click()", wait_for(driver, visible(toggle), "sidebar"))
    assistant = "//button[@data-component-id='mlflow.assistant.chat_panel.close']"
    for close in find_all(driver, assistant):
        driver.execute_script("arguments[0].click()", close)


def run_row_ids(driver: WebDriver) -> set[str]:
    """The run ids of the runs table's rendered rows (ag-grid keys each row by run id)."""
    rows = find_all(driver, "//div[contains(@class, 'ag-center-cols-container')]//div[@row-id]")
    return {row.get_attribute("row-id") for row in rows}


def test_experiment_page_lists_both_runs(page: Page, expected: Expected) -> None:
    driver = page(f"#/experiments/{expected.experiment_id}/runs", "experiment-runs")
    wait_for(
        driver,
        visible(f"//a[@data-testid='experiment-link'][normalize-space()={xpath_literal(NAME)}]"),
        f"the experiment {NAME} in the breadcrumb",
    )
    wait_for(driver, lambda d: len(run_row_ids(d)) >= len(expected.run_ids), "the run rows")
    assert len(expected.run_ids) == 2
    assert run_row_ids(driver) == set(expected.run_ids)
    # The table nests each training's child runs under its row; the count includes them.
    count = f"{expected.run_count} matching runs"
    wait_for(driver, visible(f"//*[normalize-space()='{count}']"), count)


def section_header(title: str) -> str:
    """The header of a page's collapsible section `title` (XPath)."""
    title_text = f".//text()[normalize-space()={xpath_literal(title)}]"
    return f"//div[contains(@class, 'collapse-header')][{title_text}]"


def fold(driver: WebDriver, title: str) -> None:
    """Fold the page's section `title` if it is open."""
    header = wait_for(driver, visible(section_header(title)), f"the {title} section")
    if header.get_attribute("aria-expanded") == "true":
        header.click()


def metric_grids(section: WebElement) -> list[WebElement]:
    """The Metrics section's virtualized grids: names, then values (one column per run)."""
    return section.find_elements("css selector", ".ReactVirtualized__Grid")


def metric_row_values(driver: WebDriver, grids: list[WebElement], metric: str) -> list[str]:
    """The values in `metric`'s row, left to right; empty while the row is not rendered.

    The two grids place a row's cells at the same `top` offset."""
    return driver.execute_script(
        """
        const [[names, values], metric] = arguments;
        const name = [...names.querySelectorAll('a')].find(a => a.textContent.trim() === metric);
        if (!name) return [];
        const top = name.parentElement.style.top;
        return [...values.querySelectorAll('.ReactVirtualized__Grid__innerScrollContainer > div')]
            .filter(cell => cell.style.top === top)
            .sort((a, b) => parseFloat(a.style.left) - parseFloat(b.style.left))
            .map(cell => cell.textContent.trim());
        """,
        grids,
        metric,
    )


def wheel(driver: WebDriver, element: WebElement, pixels: int) -> None:
    """Turn the mouse wheel over `element`, as a user scrolls."""
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(element), 0, pixels).perform()


def scroll_to_metric(driver: WebDriver, grids: list[WebElement], metric: str) -> list[str]:
    """Scroll the metrics grids until `metric`'s row is rendered, then bring it to the top;
    the row's values."""
    names, values = grids
    height = driver.execute_script("return arguments[0].scrollHeight", values)
    for _ in range(0, height + SCROLL_STEP_PX, SCROLL_STEP_PX):
        try:
            found = WebDriverWait(driver, 0.5, poll_frequency=0.1).until(
                lambda d: metric_row_values(d, grids, metric)
            )
        except TimeoutException:
            wheel(driver, values, SCROLL_STEP_PX)
            continue
        row_top, scrolled = driver.execute_script(
            "const [names, values, metric] = arguments;"
            "const a = [...names.querySelectorAll('a')].find(a => a.textContent.trim() === metric);"
            "return [a.parentElement.offsetTop, values.scrollTop];",
            names,
            values,
            metric,
        )
        wheel(driver, values, row_top - scrolled)
        # The names grid follows the values grid one wheel event late: two more events put
        # the names back in line with their values (to a pixel) for the screenshot.
        wheel(driver, values, 1)
        wheel(driver, values, -1)
        return found
    raise AssertionError(f"the compare view lists no metric {metric}")


def test_compare_view_shows_oot_auc_side_by_side(page: Page, expected: Expected) -> None:
    runs = json.dumps(expected.run_ids, separators=(",", ":"))
    experiments = json.dumps([expected.experiment_id])
    driver = page(f"#/compare-runs?runs={runs}&experiments={experiments}", "registry-compare")
    title = f"Comparing {len(expected.run_ids)} Runs from 1 Experiment"
    wait_for(driver, visible(f"//*[normalize-space()='{title}']"), "the compare view's title")
    # Folded, so that the screenshot shows the runs above their metrics.
    for folded in ("Visualizations", "Parameters"):
        fold(driver, folded)
    run_id_row = "//tr[th[normalize-space()='Run ID:']]/th/a"
    columns = wait_for(driver, lambda d: find_all(d, run_id_row), "the Run ID row")
    assert [column.text for column in columns] == expected.run_ids
    section = wait_for(driver, visible(f"{section_header('Metrics')}/.."), "the Metrics section")
    grids = wait_for(
        driver, lambda d: len(metric_grids(section)) == 2 and metric_grids(section), "metrics"
    )
    values = scroll_to_metric(driver, grids, METRIC)
    assert values == [ui_metric(expected.metric[run]) for run in expected.run_ids]
    run_details = wait_for(driver, visible(section_header("Run details")), "the run details")
    driver.execute_script("arguments[0].scrollIntoView()", run_details)


def test_registered_model_page_shows_champion_and_challenger(
    page: Page, expected: Expected
) -> None:
    driver = page(f"#/models/{NAME}", "registry-model")
    for version in expected.versions:
        wait_for(
            driver,
            visible(f"//div[@role='row']//a[normalize-space()='Version {version}']"),
            f"version {version} of {NAME}",
        )
    assert {"champion", "challenger"} <= expected.aliases.keys(), (
        f"`pdflow train` set the aliases {expected.aliases} on {NAME}, not champion and challenger"
    )
    for alias in ("champion", "challenger"):
        version = expected.aliases[alias]
        tag = wait_for(
            driver,
            visible(
                f"//div[@role='row'][.//a[normalize-space()='Version {version}']]"
                f"//*[@title={xpath_literal(alias)}]"
            ),
            f"the alias {alias} on version {version}",
        )
        assert tag.text.replace("\xa0", " ") == f"@ {alias}"
    # The registered model's tags (its history) would push the versions off the screenshot.
    fold(driver, "Tags")
    driver.execute_script(
        "arguments[0].scrollIntoView()", find_all(driver, section_header("Versions"))[0]
    )


def artifact_names(driver: WebDriver) -> list[str]:
    """The names of the artifact tree's rendered nodes, top to bottom."""
    nodes = find_all(driver, "//*[@data-testid='artifact-tree-node']")
    return [node.get_attribute("artifact-name") for node in nodes]


def artifact_node(name: str) -> Condition:
    return visible(f"//*[@data-testid='artifact-tree-node'][@artifact-name={xpath_literal(name)}]")


def open_newest_run_artifacts(page: Page, expected: Expected, name: str) -> WebDriver:
    run = expected.run_ids[-1]
    driver = page(f"#/experiments/{expected.experiment_id}/runs/{run}/artifacts", name)
    wait_for(driver, artifact_node("plots"), "the artifact folder plots")
    return driver


def test_run_artifacts_list_the_plots(page: Page, expected: Expected) -> None:
    driver = open_newest_run_artifacts(page, expected, "run-artifacts")
    assert "roc.png" in expected.plots
    wait_for(driver, artifact_node("plots"), "the plots folder").click()
    wait_for(driver, artifact_node("roc.png"), "plots/roc.png").click()
    names = artifact_names(driver)
    start = names.index("plots") + 1
    assert names[start : start + len(expected.plots)] == sorted(expected.plots)
    wait_for(driver, visible("//*[normalize-space()='plots/roc.png']"), "the preview of roc.png")


def test_run_artifacts_list_the_model_card(page: Page, expected: Expected) -> None:
    driver = open_newest_run_artifacts(page, expected, "run-model-card")
    root = artifact_names(driver)
    assert {"model_card.md", "model_card.html"} <= set(root), (
        f"the newest run's artifact root lists {root}, without model_card.md and model_card.html"
    )
    wait_for(driver, artifact_node("model_card.html"), "model_card.html").click()
    # The UI previews an HTML artifact in a sandboxed frame.
    frame = wait_for(driver, visible("//iframe"), "the preview of model_card.html")
    driver.switch_to.frame(frame)
    try:
        heading = f"//h1[contains(normalize-space(), {xpath_literal(NAME)})]"
        wait_for(driver, visible(heading), f"the card's heading naming {NAME}")
    finally:
        driver.switch_to.default_content()
