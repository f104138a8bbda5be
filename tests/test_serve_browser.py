"""The pages of `semsql serve` in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium offline), against a real server, database and worker:
type a query and see the grid, open an asset and see its face boxes, name a cluster, upload
from the page and see the job finish. Each test saves a screenshot (SEMSQL_TEST_ARTIFACTS,
or pytest's temporary folder)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from serve_support import (
    astronaut_jpeg,
    coloured_png,
    jpeg,
    live_server,
    running_worker,
    settings_for,
    wait_for,
)

from semsql.testing import scratch_database

TEMPLATE = "semsql_test_template"  # fix_db's migrated template

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
STAGES = ("clip", "text", "content", "faces", "face_vectors")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="browser tests need Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SEMSQL_TEST_ARTIFACTS")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "artifacts"
    folder = folder / "serve"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def site(
    server_url: str, template_url: str, tiny_models: dict[str, str], tmp_path_factory
) -> Iterator[tuple[str, str]]:
    """A live server over a library of three uploads (two copies of the astronaut, so that
    her face makes a cluster), with a worker running: (base URL, database URL)."""
    folder = tmp_path_factory.mktemp("serve-browser")
    with (
        scratch_database(
            server_url, f"semsql_serve_browser_{os.getpid()}", template="semsql_test_template"
        ) as db_url,
        running_worker(db_url, tiny_models, STAGES),
        live_server(settings_for(db_url, folder)) as base,
    ):
        import io

        from PIL import Image

        smaller = Image.open(io.BytesIO(astronaut_jpeg())).resize((400, 400))
        files = [
            ("files", ("astronaut.jpg", astronaut_jpeg(), "image/jpeg")),
            ("files", ("astronaut-small.jpg", jpeg(smaller), "image/jpeg")),
            ("files", ("red.png", coloured_png((200, 30, 30)), "image/png")),
        ]
        job = httpx.post(f"{base}/api/assets", files=files, data={"caption": "an astronaut"})
        job_id = job.json()["job_id"]
        wait_for(lambda: httpx.get(f"{base}/api/jobs/{job_id}").json()["status"] == "completed")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT semsql.refresh_face_clusters(0.5, 2)")
        yield base, db_url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1000"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def waited(driver, css: str, timeout: float = 30):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(
        shown.visibility_of_all_elements_located((By.CSS_SELECTOR, css))
    )


def test_type_a_query_and_see_the_grid(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    base, _ = site
    browser.get(base + "/")
    box = browser.find_element(By.ID, "query")
    box.send_keys("astronaut")
    browser.find_element(By.ID, "search-button").click()
    tiles = waited(browser, "#results .tile")
    assert "query=astronaut" in browser.current_url  # the URL holds the query
    assert len(tiles) >= 2
    assert tiles[0].find_element(By.CSS_SELECTOR, ".score").text
    badges = {badge.text for badge in browser.find_elements(By.CSS_SELECTOR, "#results .badge")}
    assert "keyword" in badges
    image = tiles[0].find_element(By.TAG_NAME, "img")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image) > 0, 30)
    browser.save_screenshot(str(artifacts / "search.png"))


def test_open_an_asset_and_see_its_face_boxes(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    base, db_url = site
    with psycopg.connect(db_url) as conn:
        asset_id = conn.execute(
            "SELECT id FROM semsql.assets WHERE uri LIKE '%/astronaut.jpg'"
        ).fetchone()[0]
    browser.get(f"{base}/assets/{asset_id}")
    boxes = waited(browser, ".face-box.placed")
    picture = browser.find_element(By.ID, "asset-image").rect
    face = boxes[0].rect
    assert 0 < face["width"] < picture["width"] / 2
    assert (
        picture["x"] <= face["x"] and face["x"] + face["width"] <= picture["x"] + picture["width"]
    )
    assert (
        picture["y"] <= face["y"] and face["y"] + face["height"] <= picture["y"] + picture["height"]
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#similar-content .tile")
    browser.save_screenshot(str(artifacts / "asset.png"))


def test_name_a_cluster_of_unknown_faces(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    base, db_url = site
    browser.get(base + "/people")
    cluster = waited(browser, ".cluster")[0]
    cluster.find_element(By.NAME, "name").send_keys("Eileen Collins")
    cluster.find_element(By.TAG_NAME, "button").click()
    waited(browser, ".cluster form.done")
    browser.save_screenshot(str(artifacts / "people-named.png"))
    with psycopg.connect(db_url) as conn:
        named = conn.execute(
            "SELECT count(*) FROM semsql.faces f JOIN semsql.people p ON p.id = f.person_id"
            " WHERE p.name = 'Eileen Collins'"
        ).fetchone()[0]
    assert named >= 2
    browser.get(base + "/people")
    waited(browser, ".person")
    browser.save_screenshot(str(artifacts / "people.png"))


def test_upload_from_the_page_and_see_the_job_finish(
    site, browser, artifacts: Path, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    base, _ = site
    picture = tmp_path / "green.png"
    picture.write_bytes(coloured_png((20, 180, 40), (120, 90)))
    browser.get(base + "/jobs")
    browser.find_element(By.ID, "upload-files").send_keys(str(picture))
    browser.find_element(By.NAME, "caption").send_keys("a green field")
    browser.find_element(By.ID, "upload-button").click()
    waited(browser, "#upload-status .status-completed", timeout=60)
    assert "1 new" in browser.find_element(By.ID, "upload-status").text
    browser.save_screenshot(str(artifacts / "jobs-upload.png"))


def test_scrolling_down_loads_the_next_hits_and_the_url_keeps_them(
    site, browser, artifacts: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = site
    everything = httpx.get(f"{base}/api/search", params={"order": "newest", "k": 100}).json()
    total = len(everything["hits"])
    assert total >= 3
    # The page comes with one tile; the script may add the next at once, where the grid's end
    # is in view before any scrolling (a short page), so that is counted on the HTML.
    page = httpx.get(f"{base}/", params={"order": "newest", "k": 1}).text
    assert page.count('<figure class="tile"') == 1
    browser.get(f"{base}/?order=newest&k=1")
    assert not browser.find_element(By.ID, "next-page").is_displayed()
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    WebDriverWait(browser, 30).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, "#results .tile")) == total
    )
    WebDriverWait(browser, 10).until(lambda driver: not driver.find_elements(By.ID, "load-more"))
    tiles = browser.find_elements(By.CSS_SELECTOR, "#results .tile")
    ids = [tile.get_attribute("data-asset") for tile in tiles]
    assert ids == [str(hit["asset_id"]) for hit in everything["hits"]]
    assert f"k={total}" in browser.current_url and "order=newest" in browser.current_url
    browser.save_screenshot(str(artifacts / "search-scrolled.png"))
    browser.get(browser.current_url)  # the URL shows the same grid
    again = browser.find_elements(By.CSS_SELECTOR, "#results .tile")
    assert [tile.get_attribute("data-asset") for tile in again] == ids


def test_click_the_media_type_and_date_facets(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, db_url = site
    with psycopg.connect(db_url, autocommit=True) as conn:
        for name, taken in (("astronaut.jpg", "2019-07-14"), ("astronaut-small.jpg", "2019-12-01"),
                            ("red.png", "2021-02-01")):  # fmt: skip
            conn.execute(
                "UPDATE semsql.assets SET taken_at = %s::date + time '12:00' WHERE uri LIKE %s",
                [taken, f"%/{name}"],
            )
    browser.get(base + "/")
    browser.find_element(By.CSS_SELECTOR, ".facets summary").click()
    browser.find_element(By.CSS_SELECTOR, '#facet-media-type input[value="image"]').click()
    WebDriverWait(browser, 30).until(lambda driver: "media_type=image" in driver.current_url)
    years = waited(browser, "#facet-dates a.date")
    assert [year.get_attribute("data-value") for year in years] == ["2019", "2021"]
    years[0].click()
    months = waited(browser, "#facet-dates a.date")
    url = browser.current_url
    assert "taken_after=2019-01-01" in url and "taken_before=2020-01-01" in url
    assert "media_type=image" in url  # the link keeps the rest of the query
    assert [month.text for month in months] == ["Jul 1", "Dec 1"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .tile")) == 2
    browser.save_screenshot(str(artifacts / "search-facets.png"))
    months[0].click()
    WebDriverWait(browser, 30).until(lambda driver: "taken_after=2019-07-01" in driver.current_url)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#results .tile")) == 1
    browser.find_element(By.CSS_SELECTOR, "#facet-dates a.date-any").click()
    WebDriverWait(browser, 30).until(lambda driver: "taken_after" not in driver.current_url)
    assert "media_type=image" in browser.current_url


def test_say_a_face_is_not_the_person(site, browser, artifacts: Path) -> None:
    """After test_name_a_cluster_of_unknown_faces: one of her faces is not her."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, db_url = site
    browser.get(base + "/people")
    person = waited(browser, ".person")[0]
    faces = person.find_elements(By.CSS_SELECTOR, "figure.face")
    assert len(faces) >= 2
    face_id = int(faces[0].get_attribute("id").removeprefix("face-"))
    faces[0].find_element(By.CSS_SELECTOR, ".not-person button").click()
    WebDriverWait(browser, 30).until(
        lambda driver: not driver.find_elements(By.ID, f"face-{face_id}")
    )  # the page reloads without it
    browser.save_screenshot(str(artifacts / "people-not-this-person.png"))
    with psycopg.connect(db_url) as conn:
        rejected = conn.execute(
            "SELECT p.name FROM semsql.face_rejections r JOIN semsql.people p"
            " ON p.id = r.person_id WHERE r.face_id = %s",
            [face_id],
        ).fetchall()
        linked = conn.execute(
            "SELECT person_id FROM semsql.faces WHERE id = %s", [face_id]
        ).fetchone()
    assert rejected == [("Eileen Collins",)] and linked == (None,)


def test_see_and_undo_a_rejection(site, browser, artifacts: Path) -> None:
    """After test_say_a_face_is_not_the_person: the face is listed under her, and undone."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, db_url = site
    with psycopg.connect(db_url) as conn:
        face_id, person_id = conn.execute(
            "SELECT face_id, person_id FROM semsql.face_rejections"
        ).fetchone()
    browser.get(base + "/people")
    listed = waited(browser, f"#rejections-{person_id}")[0]
    listed.find_element(By.TAG_NAME, "summary").click()
    rejected = waited(browser, f"#rejected-{face_id}-{person_id}")[0]
    image = rejected.find_element(By.TAG_NAME, "img")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", image) > 0, 30)
    browser.save_screenshot(str(artifacts / "people-rejections.png"))
    rejected.find_element(By.CSS_SELECTOR, ".undo-rejection button").click()
    WebDriverWait(browser, 30).until(
        lambda driver: not driver.find_elements(By.ID, f"rejections-{person_id}")
    )  # the page reloads without the list
    with psycopg.connect(db_url) as conn:
        left = conn.execute("SELECT count(*) FROM semsql.face_rejections").fetchone()[0]
        linked = conn.execute(
            "SELECT person_id FROM semsql.faces WHERE id = %s", [face_id]
        ).fetchone()
    # Matched again: the other copy of her face is a reference of hers.
    assert left == 0 and linked == (person_id,)
    assert browser.find_elements(By.ID, f"face-{face_id}")
    browser.save_screenshot(str(artifacts / "people-undone.png"))


def test_keep_another_copy_of_a_duplicate(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    base, _ = site
    browser.get(base + "/duplicates")
    group = waited(browser, ".group")[0]
    tiles = group.find_elements(By.CSS_SELECTOR, ".tile")
    assert len(tiles) == 2
    kept, other = (tile.get_attribute("data-asset") for tile in tiles[::-1])
    tiles[1].find_element(By.CSS_SELECTOR, ".keep-copy button").click()  # not the suggested
    waited(browser, f'.tile.deleted[data-asset="{other}"]')
    browser.save_screenshot(str(artifacts / "duplicates-kept.png"))
    assert "1 asset row deleted" in group.find_element(By.CSS_SELECTOR, ".result").text
    # Every form that would delete the copy left (or the deleted one again) is spent.
    buttons = group.find_elements(By.CSS_SELECTOR, "form button")
    assert [button.is_enabled() for button in buttons] == [False] * len(buttons)
    assert httpx.get(f"{base}/api/assets/{kept}").status_code == 200
    assert httpx.get(f"{base}/api/assets/{other}").status_code == 404


def test_retry_the_failed_tasks_of_one_reason(site, browser, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    base, db_url = site
    with psycopg.connect(db_url, autocommit=True) as conn:
        failed = conn.execute(
            """UPDATE semsql.tasks t SET status = 'failed', finished_at = now(),
                      last_error = 'cannot decode ' || a.uri || ': cannot identify image file'
               FROM semsql.assets a WHERE a.id = t.asset_id AND t.stage = 'content'
               RETURNING t.asset_id"""
        ).fetchall()
    assert len(failed) >= 2
    browser.get(base + "/jobs")
    rows = waited(browser, "#failed-tasks tr.failure")
    assert len(rows) == 1  # one reason, however many files
    assert f"Retry these {len(failed)}" in rows[0].text
    browser.save_screenshot(str(artifacts / "jobs-failed.png"))
    rows[0].find_element(By.CSS_SELECTOR, ".retry-reason button").click()
    waited(browser, "#failed-tasks form.retry-reason.done")
    assert f"{len(failed)} tasks queued again" in rows[0].text
