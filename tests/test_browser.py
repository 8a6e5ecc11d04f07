"""Real Chromium against a live server: log in, list, detail, annotate, bulk action, upload, XSS.

Screenshots of the pages are saved under test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from trajectories.store import AnnotationChange

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = os.environ.get("TRAJSITE_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "pw-browser-123"
XSS_SCRIPT = "<script>window.__xss = 1</script>"
XSS_IMG = '<img src=x onerror="window.__xss = 2">'


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still sync.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser, live_server, django_user_model, stored):
    django_user_model.objects.create_superuser(username="browser", password=PASSWORD)
    # CSP off in the browser: the XSS test must show that escaping alone keeps model output inert,
    # and Playwright evaluates its wait conditions as strings.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    opened.goto(f"{live_server.url}/admin/login/?next=/trajectories/")
    opened.fill("#id_username", "browser")
    opened.fill("#id_password", PASSWORD)
    opened.click("input[type=submit]")
    opened.wait_for_url(re.compile(r".*/trajectories/$"))
    opened.base = live_server.url
    yield opened
    context.close()


@pytest.fixture
def stored(store, record, write_jsonl, run_import):
    records = [
        record(
            trajectory_id=f"t{i:02d}",
            reward=i / 40,
            created_at=1000 + i,
            agent_name="alpha" if i % 2 else "beta",
            iteration_id=i % 5,
            analysis={"is_success": i % 3 == 0, "category": f"c{i % 3}", "root_cause": ""},
        )
        for i in range(40)
    ]
    records.append(
        record(
            trajectory_id="xss",
            created_at=5000,
            data_id=XSS_IMG,
            steps=[
                {"role": "assistant", "content": XSS_SCRIPT},
                {"role": "tool", "content": XSS_IMG},
                {"role": "user", "content": "[click](javascript:window.__xss=3)"},
            ],
        )
    )
    run_import(write_jsonl(records))
    return store


def _row_ids(page) -> list[str]:
    return page.locator("#result_list tbody input.action-select").evaluate_all("boxes => boxes.map(b => b.value)")


def test_list_filters_sorts_and_pages(page):
    ARTIFACTS.mkdir(exist_ok=True)
    assert "41 results" in page.locator("#changelist-search").inner_text()
    page.click("#changelist-filter a[title=alpha]")
    page.wait_for_url(re.compile(r".*agent_name=alpha"))
    assert "20 results" in page.locator("#changelist-search").inner_text()
    page.click("#result_list thead th.column-reward a")  # a number: largest first
    page.wait_for_url(re.compile(r".*ordering=-reward"))
    assert _row_ids(page)[:2] == ["t39", "t37"]
    page.click("#result_list thead th.column-reward a")
    page.wait_for_url(re.compile(r".*ordering=reward"))
    assert _row_ids(page)[:3] == ["t01", "t03", "t05"]
    page.click("#result_list thead th.column-reward a")
    page.wait_for_url(re.compile(r".*ordering=-reward"))
    assert "Agent: alpha" in page.locator(".active-filters").inner_text()  # chips in words
    page.click(".active-filters a[aria-label='remove agent_name']")
    page.wait_for_url(re.compile(r".*/trajectories/\?ordering=-reward$"))
    page.click(".paginator a:text-is('25')")
    page.wait_for_url(re.compile(r".*page_size=25"))
    assert "page 1 of 2 · 41 trajectories" in page.locator(".paginator").inner_text()
    page.click(".paginator a:text-is('2')")
    page.wait_for_url(re.compile(r".*page=2"))
    assert len(_row_ids(page)) == 16
    assert _row_ids(page)[0] == "t15" and _row_ids(page)[-1] == "t00"
    page.fill("#changelist-filter input[name=reward_min]", "0.5")
    page.click("#range-form button")
    page.wait_for_url(re.compile(r".*reward_min=0.5$"))
    assert "reward_max" not in page.url, "empty range inputs are dropped from the shareable URL"
    assert "21 results" in page.locator("#changelist-search").inner_text()
    page.screenshot(path=str(ARTIFACTS / "list.png"), full_page=True)


def test_detail_bookmark_and_analysis_are_kept(page, stored):
    page.goto(f"{page.base}/trajectories/?ordering=trajectory_id")
    page.click("#result_list a >> text=t01")
    page.wait_for_url(re.compile(r".*/trajectories/t01/"))
    url = page.url
    page.click("#bookmark-toggle")
    page.wait_for_function("document.getElementById('bookmark-toggle').textContent.includes('Bookmarked')")
    assert page.url == url, "the bookmark toggles without a reload"
    page.select_option("#id_is_success", "false")
    page.fill("#id_category", "wrong_tool")
    page.fill("#id_root_cause", "called search for arithmetic")
    page.fill("#id_tags", "needs review, urgent\narith")
    # Meanwhile another user writes a note and a tag: the save below sends only what this page changed.
    stored.annotate(
        trajectory_ids=["t01"], change=AnnotationChange(notes="from elsewhere", add_tags=("other",)), user="x"
    )
    page.click("#save-annotation")
    page.wait_for_function("document.getElementById('save-status').textContent.startsWith('saved')")
    page.screenshot(path=str(ARTIFACTS / "detail.png"), full_page=True)
    page.reload()
    assert page.locator("#bookmark-toggle").inner_text() == "★ Bookmarked"
    assert page.input_value("#id_category") == "wrong_tool"
    assert page.input_value("#id_is_success") == "false"
    assert page.input_value("#id_tags") == "arith\nother\nneeds review, urgent"
    assert page.input_value("#id_notes") == "from elsewhere"
    record = stored.get(trajectory_id="t01")
    assert (record["is_bookmarked"], record["root_cause"]) == (True, "called search for arithmetic")
    assert record["tags"] == ["arith", "other", "needs review, urgent"]
    page.keyboard.press("j")
    page.wait_for_url(re.compile(r".*/trajectories/t02/"))
    page.keyboard.press("k")
    page.wait_for_url(re.compile(r".*/trajectories/t01/"))


def test_bulk_action_on_a_filtered_set(page, stored):
    page.goto(f"{page.base}/trajectories/?agent_name=beta")
    page.check("#select-all-matching")
    page.select_option("#action-select", "add_tag")
    page.fill("#action-value", "beta-batch")
    page.click("#changelist-form button[type=submit]")
    assert "add a tag to 20 trajectories" in page.locator("#confirm-summary").inner_text()
    page.click("#confirm-button")
    page.wait_for_url(re.compile(r".*/trajectories/\?agent_name=beta"))
    assert "Done: add a tag to 20 trajectories." in page.locator(".messagelist").inner_text()
    page.goto(f"{page.base}/trajectories/?tag=beta-batch")
    assert "20 results" in page.locator("#changelist-search").inner_text()


def test_upload_shows_the_import_result(page, import_worker, tmp_path, record, settings):
    settings.VAR_DIR = tmp_path
    dump = tmp_path / "upload.jsonl"
    lines = [__import__("json").dumps(record(trajectory_id=f"up{i}")) for i in range(5)] + ['{"data_id": 1}']
    dump.write_text("\n".join(lines) + "\n")
    page.goto(f"{page.base}/trajectories/import/")
    page.set_input_files("#id_files", str(dump))
    page.click("#import-submit")
    # ?.: until the upload's answer arrives the form page (no job status) is still shown.
    page.wait_for_function("document.getElementById('job-status')?.textContent.includes('rejected')", timeout=30_000)
    assert page.locator("#job-imported").inner_text() == "5"
    assert "upload.jsonl:6: record: unrecognised shape" in page.locator("#job-errors").inner_text()
    assert "/uploads/" not in page.locator("#job-errors").inner_text(), "errors name the uploaded file, not a path"
    page.screenshot(path=str(ARTIFACTS / "import.png"), full_page=True)


def test_model_output_renders_as_text_and_never_runs(page):
    page.goto(f"{page.base}/trajectories/xss/")
    timeline = page.locator("#timeline").inner_text()
    assert XSS_SCRIPT in timeline and XSS_IMG in timeline
    assert page.evaluate("window.__xss") is None
    page.goto(f"{page.base}/trajectories/?search=xss")
    assert XSS_IMG in page.locator("#result_list").inner_text()
    assert page.evaluate("window.__xss") is None


FORMATS = Path(__file__).resolve().parent / "data" / "formats"


def test_upload_form_takes_format_mapping_defaults_and_dry_run(page, import_worker, tmp_path, settings):
    settings.VAR_DIR = tmp_path
    report = tmp_path / "report.json"
    report.write_text(
        '{"meta": {"policy": "p-9"}, "runs": [{"task": "q1", "turns": [{"speaker": "user", "text": "hi"}]},'
        ' {"task": "q2", "turns": [{"speaker": "user", "text": "yo"}]}]}'
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "records: runs\ncontext:\n  agent_name: meta.policy\nfields:\n  data_id: task\n  steps: turns\n"
        "step_fields:\n  role: speaker\n  content: text\n"
    )
    page.goto(f"{page.base}/trajectories/import/")
    assert page.locator("#id_format option").all_inner_texts()[0] == "auto"
    page.set_input_files("#id_files", str(report))
    page.set_input_files("#id_mapping", str(mapping))
    page.fill("#id_training_id", "web-run-7")
    page.check("#id_dry_run")
    page.click("#import-submit")
    page.wait_for_function("document.getElementById('job-status')?.textContent.includes('dry run')", timeout=30_000)
    assert "dry run: 2 would import, 0 rejected" in page.locator("#job-status").inner_text()
    assert page.evaluate("fetch('/api/trajectories/?training_id=web-run-7').then(r => r.json())")["count"] == 0
    # The same upload for real: the mapping's records, its context default and the form's run.
    page.goto(f"{page.base}/trajectories/import/")
    page.set_input_files("#id_files", str(report))
    page.set_input_files("#id_mapping", str(mapping))
    page.fill("#id_training_id", "web-run-7")
    page.click("#import-submit")
    page.wait_for_function("document.getElementById('job-status')?.textContent === 'imported'", timeout=30_000)
    page.click("#job-trajectories")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2 and "p-9" in rows.first.inner_text() and "web-run-7" in rows.first.inner_text()
    page.goto(f"{page.base}/trajectories/import/")
    history = page.locator("#import-history").inner_text()
    assert "report.json" in history and "dry run: 2 would import" in history and "\timported\t" in history


def test_a_real_shaped_trajectory_page_stays_within_the_window(page, tmp_path, run_import):
    run_import(FORMATS / "tau2-bench" / "results.json")
    page.set_viewport_size({"width": 1024, "height": 800})
    page.goto(f"{page.base}/trajectories/e41f2b07-93a8-4c5e-b1d2-6a0c9f7e5d34/")
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]} px wide in a {widths[1]} px window"
    assert page.locator("details.step-meta").count() >= 5, "extra step keys are folded, one block per step"
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 20_000, f"{height} px tall"
    page.screenshot(path=str(ARTIFACTS / "detail-tau2.png"), full_page=True)


def test_stats_charts_draw_and_a_click_opens_that_iterations_list(page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{page.base}/trajectories/stats/?by=iteration_id")
    charts = page.locator("figure.chart-box svg.chart")
    assert charts.count() >= 8
    assert page.locator("figure.chart-box").first.locator("rect.bar").count() == 5  # one bar per iteration
    page.screenshot(path=str(ARTIFACTS / "stats.png"), full_page=True)
    point = page.locator("figure.chart-box").nth(1).locator("a").nth(2)  # reward chart, iteration 2
    assert "Iteration 2" in point.locator("title").text_content()
    point.click()
    page.wait_for_url(re.compile(r".*/trajectories/\?.*iteration_id=2$"))
    assert "8 results" in page.locator("#changelist-search").inner_text()


def test_group_page_and_compare_render(page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(f"{page.base}/trajectories/groups/")
    page.locator("table.groups-table tbody a").first.click()
    page.wait_for_url(re.compile(r".*/trajectories/group/\?"))
    assert page.locator("table.samples-table tbody tr").count() == 8
    page.screenshot(path=str(ARTIFACTS / "group.png"), full_page=True)
    page.locator("a:text('compare step by step')").click()
    page.wait_for_url(re.compile(r".*/trajectories/compare/\?ids="))
    assert page.locator("table.compare-diff tr.differs").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)


def test_the_list_fits_1400_pixels_with_long_names(page, record, write_jsonl, run_import):
    long = "grpo-qwen2.5-72b-instruct-math-and-code-mixture-run-2026-11-28-seed-1234"
    run_import(write_jsonl([record(trajectory_id=f"long-{i}-" + "x" * 60, training_id=long, agent_name=long + "-agent",
                                   data_id="question-" + "y" * 60, created_at=9000 + i) for i in range(30)],
                           name="long.jsonl"))  # fmt: skip
    page.goto(f"{page.base}/trajectories/")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no horizontal scroll"
    results = page.locator("#changelist .results")
    assert results.evaluate("box => box.scrollWidth <= box.clientWidth"), "the table fits: nothing scrolls sideways"
    heights = page.locator("#result_list tbody tr").evaluate_all("rows => rows.map(r => r.offsetHeight)")
    assert max(heights) < 40, "names stay on one line"
    cell = page.locator("#result_list td.field-training_id").first
    assert cell.get_attribute("title") == long  # the whole name on hover
    page.screenshot(path=str(ARTIFACTS / "list-dense.png"), full_page=False)


def test_content_search_marks_matches_and_similar_loads(page):
    page.fill("#searchbar", "answer 42")
    page.press("#searchbar", "Enter")
    page.wait_for_url(re.compile(r".*q=answer\+42"))
    assert "40 results" in page.locator("#changelist-search").inner_text()
    assert page.locator("td.snippet mark").first.inner_text().lower() in ("answer", "42")
    page.locator("#result_list tbody th a").first.click()
    page.wait_for_selector("#search-nav")
    assert page.locator("#search-count").get_attribute("data-total") == "2"  # the tool result "42", the answer
    assert page.locator("article.step.search-hit mark").count() >= 2
    page.keyboard.press("n")
    assert page.evaluate("window.location.hash") == "#step-4"
    page.click("#similar summary")
    page.wait_for_selector(".similar-table tr")
    assert page.locator(".similar-table tr").count() >= 5
    # Model output found by a search stays text in the snippet.
    page.goto(f"{page.base}/trajectories/?q=javascript")
    shown = page.locator("td.snippet").first.inner_text()
    assert XSS_IMG in shown and "[click](javascript:window.__xss=3)" in shown
    assert page.evaluate("window.__xss") is None
