"""The dashboard in a real browser (Debian's headless Chromium) against a real installation: API server, worker
and beat processes, PostgreSQL, Redis, and the OpenAI/Keboola simulator."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.api.web.conftest import KEBOOLA_TOKEN, OPENAI_KEY, Installation

pytestmark = pytest.mark.slow

XSS_NAME = "<img src=x onerror=alert(1)>'\""
HTML_ERROR = "<b>bold</b><img src=x onerror=alert(2)><script>alert(3)</script>"
PAGES = ("/", "/jobs", "/jobs/new", "/secrets", "/keboola-setup", "/jobs/1", "/sign-in")


def wait_for(driver: WebDriver, condition: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    # A page or the live fragment may be replaced while the condition reads it: read again at the next poll.
    transient = (StaleElementReferenceException, NoSuchElementException)
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=transient).until(
        lambda _driver: condition(), what
    )


# Read in one script run, so a live refresh or a navigation cannot replace an element between finding it and
# reading it (Chromium then answers with an inspector error rather than a stale-element one).
_TEXTS = "return Array.from(document.querySelectorAll(arguments[0]), element => element.innerText);"


def text_of(driver: WebDriver, selector: str) -> str:
    texts = driver.execute_script(_TEXTS, selector)
    if not texts:
        raise NoSuchElementException(selector)
    return texts[0]


def notices(driver: WebDriver) -> str:
    return " ".join(driver.execute_script(_TEXTS, ".notice"))


def sign_in(driver: WebDriver, installation: Installation, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(installation.base_url + "/")
    wait_for(driver, lambda: "/sign-in" in driver.current_url, what="the redirect to the sign-in page")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    wait_for(driver, lambda: driver.find_elements(By.CSS_SELECTOR, "h1") and text_of(driver, "h1") == "Overview")


def fill(driver: WebDriver, field_id: str, value: str) -> None:
    element = driver.find_element(By.ID, field_id)
    element.clear()
    element.send_keys(value)


def assert_no_dialog_and_no_injected_element(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (the property raises when no dialog is open)
    assert driver.find_elements(By.CSS_SELECTOR, "main img, main script, main b") == []


def severe_console_messages(driver: WebDriver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def create_job_through_api(installation: Installation, name: str, batch_ids: list[str], interval: int = 2) -> int:
    secrets = {secret["name"]: secret["id"] for secret in installation.api("GET", "/api/admin/secrets").json()}
    response = installation.api(
        "POST",
        "/api/jobs",
        json={
            "name": name,
            "batch_ids": batch_ids,
            "openai_secret_id": secrets["openai-main"],
            "keboola_secret_id": secrets["keboola-main"],
            "keboola_stack_url": installation.simulator.stack_url,
            "keboola_component_id": "kds-team.app-custom-python",
            "keboola_configuration_id": "browser",
            "poll_interval_seconds": interval,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def fetch_in_page(driver: WebDriver, path: str, method: str = "GET", form: dict[str, str] | None = None) -> dict:
    """Call the server from the page's own JavaScript, with its cookies: what a script in the page could do."""
    return driver.execute_async_script(
        """
        const [path, method, form, done] = arguments;
        const options = {method, credentials: "same-origin", redirect: "manual"};
        if (form) { options.body = new URLSearchParams(form); }
        fetch(path, options).then(r => done({status: r.status, csp: r.headers.get("content-security-policy"),
          nosniff: r.headers.get("x-content-type-options"), referrer: r.headers.get("referrer-policy")}))
          .catch(e => done({error: String(e)}));
        """,
        path,
        method,
        form,
    )


def test_the_journey(browser: WebDriver, installation: Installation) -> None:
    driver, simulator = browser, installation.simulator
    # 1. Sign in with API_TOKEN.
    sign_in(driver, installation, installation.api_token)
    assert "No jobs yet" in text_of(driver, "main")

    # 2. Add both secrets.
    for name, kind, value in (("openai-main", "openai", OPENAI_KEY), ("keboola-main", "keboola", KEBOOLA_TOKEN)):
        driver.get(installation.base_url + "/secrets")
        fill(driver, "secret-name", name)
        Select(driver.find_element(By.ID, "secret-type")).select_by_value(kind)
        fill(driver, "secret-value", value)
        driver.find_element(By.CSS_SELECTOR, "form.form-row button[type=submit]").click()
        wait_for(driver, lambda name=name: f"Secret '{name}' added" in notices(driver))
    assert OPENAI_KEY not in driver.page_source and KEBOOLA_TOKEN not in driver.page_source

    # 3. Create a job with three batches (pasted with a comma, a space and a new line); one batch will fail.
    for batch_id, final_status, duration in (("batch_journey_a", "completed", 10), ("batch_journey_b", "completed", 16),
                                              ("batch_journey_c", "failed", 6)):  # fmt: skip
        simulator.control.create_batch(
            batch_id=batch_id, final_status=final_status, duration=duration, request_total=300
        )
    driver.get(installation.base_url + "/jobs/new")
    fill(driver, "name", "Journey: three batches")
    fill(driver, "batch_ids", "batch_journey_a, batch_journey_b\nbatch_journey_c")
    Select(driver.find_element(By.ID, "openai_secret")).select_by_visible_text("openai-main")
    Select(driver.find_element(By.ID, "keboola_secret")).select_by_visible_text("keboola-main")
    fill(driver, "keboola_stack_url", simulator.stack_url)
    fill(driver, "keboola_component_id", "kds-team.app-custom-python")
    fill(driver, "keboola_configuration_id", "journey")
    fill(driver, "poll_interval_seconds", "1")
    driver.find_element(By.CSS_SELECTOR, "form.form button[type=submit]").click()
    wait_for(driver, lambda: "created" in notices(driver), what="the new job's page")
    assert text_of(driver, "h1") == "Journey: three batches"
    assert len(driver.find_elements(By.CSS_SELECTOR, ".batches-table tbody tr")) == 3

    # 4. The progress bars move as the simulator advances, without a reload of the page.
    driver.execute_script("window.journeyMarker = 'still the same page';")

    def requests_done() -> int:
        values = driver.find_elements(By.CSS_SELECTOR, "#job-live .batches-table progress")
        return sum(int(float(value.get_attribute("value"))) for value in values)

    seen = [requests_done()]
    for _ in range(2):
        wait_for(driver, lambda: requests_done() > seen[-1], what="the progress bars to move")
        seen.append(requests_done())
    assert seen == sorted(seen) and seen[-1] > seen[0]
    assert driver.execute_script("return window.journeyMarker;") == "still the same page"

    # 5. It ends as completed_with_failures, with its Keboola job shown.
    wait_for(
        driver,
        lambda: driver.find_elements(By.CSS_SELECTOR, '#job-live .job-summary [data-status="completed_with_failures"]'),
        timeout=90,
        what="the job to complete with failures",
    )
    keboola_job_id = text_of(driver, "#keboola-job code")
    assert keboola_job_id == simulator.control.keboola_jobs()[0]["id"]
    assert driver.find_element(By.CSS_SELECTOR, "#keboola-job .badge").get_attribute("data-status") == "success"
    link = driver.find_element(By.ID, "keboola-job-link").get_attribute("href")
    assert link == f"{simulator.stack_url}/admin/projects/4242/queue/{keboola_job_id}"
    assert driver.execute_script("return window.journeyMarker;") == "still the same page"
    assert "keboola started" in text_of(driver, ".timeline")

    # 6. Pause and resume another job.
    simulator.control.create_batch(batch_id="batch_journey_other", final_status="completed", duration=600)
    other = create_job_through_api(installation, "Another job", ["batch_journey_other"], interval=30)
    driver.get(f"{installation.base_url}/jobs/{other}")
    driver.find_element(By.XPATH, "//button[normalize-space()='Pause']").click()
    wait_for(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '.job-summary [data-status="paused"]'))
    assert "Job 'Another job' paused." in notices(driver)
    driver.find_element(By.XPATH, "//button[normalize-space()='Resume']").click()
    wait_for(driver, lambda: driver.find_elements(By.CSS_SELECTOR, '.job-summary [data-status="active"]'))
    assert installation.api("GET", f"/api/jobs/{other}").json()["status"] == "active"

    # 7. Delete a job, confirming in the page.
    driver.find_element(By.XPATH, "//summary[normalize-space()='Delete…']").click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Yes, delete the job']").click()
    wait_for(driver, lambda: "Job 'Another job' deleted." in notices(driver))
    assert driver.current_url.endswith("/jobs")
    assert "Another job" not in text_of(driver, ".jobs-table")
    assert installation.api("GET", f"/api/jobs/{other}").status_code == 404
    assert severe_console_messages(driver) == []


def test_hostile_names_and_error_messages_render_as_text(browser: WebDriver, installation: Installation) -> None:
    driver = browser
    installation.simulator.control.create_batch(batch_id="batch_hostile", final_status="completed", duration=600)
    installation.simulator.control.add_fault("/v1/batches/batch_hostile", method="GET", status=400, message=HTML_ERROR)
    job_id = create_job_through_api(installation, XSS_NAME, ["batch_hostile"])
    wait_for(driver, lambda: installation.api("GET", f"/api/jobs/{job_id}").json()["last_error"], what="the error")

    for path in ("/", "/jobs", f"/jobs/{job_id}"):
        driver.get(installation.base_url + path)
        assert_no_dialog_and_no_injected_element(driver)
    assert text_of(driver, "h1") == XSS_NAME
    assert HTML_ERROR in text_of(driver, "#job-live")
    time.sleep(2.5)  # one live refresh swaps the fragment in: it must stay text too
    assert_no_dialog_and_no_injected_element(driver)
    assert HTML_ERROR in text_of(driver, "#job-live")
    installation.simulator.control.clear_faults()
    assert severe_console_messages(driver) == []


def test_a_post_without_the_csrf_token_is_refused(browser: WebDriver, installation: Installation) -> None:
    driver = browser
    installation.simulator.control.create_batch(batch_id="batch_csrf", final_status="completed", duration=600)
    job_id = create_job_through_api(installation, "CSRF target", ["batch_csrf"], interval=30)
    driver.get(f"{installation.base_url}/jobs/{job_id}")

    refused = fetch_in_page(driver, f"/jobs/{job_id}/pause", "POST", {})
    forged = fetch_in_page(driver, f"/jobs/{job_id}/pause", "POST", {"csrf_token": "forged"})
    assert refused["status"] == forged["status"] == 400
    assert installation.api("GET", f"/api/jobs/{job_id}").json()["status"] == "active"


def test_every_page_carries_the_security_headers(browser: WebDriver, installation: Installation) -> None:
    driver = browser
    driver.get(installation.base_url + "/")
    for path in PAGES:
        headers = fetch_in_page(driver, path)
        assert headers["status"] == 200, path
        assert "script-src 'self'" in headers["csp"] and "frame-ancestors 'none'" in headers["csp"], path
        assert "unsafe-inline" not in headers["csp"] and "unsafe-eval" not in headers["csp"], path
        assert headers["nosniff"] == "nosniff" and headers["referrer"] == "same-origin", path


def test_relative_times_stay_true_while_a_page_is_open(browser: WebDriver, installation: Installation) -> None:
    driver = browser
    driver.get(installation.base_url + "/jobs?q=Journey")
    last_check = driver.find_element(By.CSS_SELECTOR, ".jobs-table td[data-label='Last check'] time")
    first = last_check.text
    wait_for(driver, lambda: last_check.text != first, timeout=5, what="the relative time to tick")
    assert re.fullmatch(r"\d+ (s|min) ago", last_check.text), last_check.text
    assert last_check.get_attribute("title").endswith(" UTC")


def test_layout_screenshots_at_phone_and_desktop_widths(
    browser: WebDriver, installation: Installation, artifacts: Path
) -> None:
    """Saves what a person would see; at 375 px nothing may overflow the page sideways."""
    driver = browser
    for width in (375, 1280):
        for name, path in (("overview", "/"), ("jobs", "/jobs"), ("job", "/jobs/1")):
            driver.set_window_size(width, 900)
            driver.get(installation.base_url + path)
            height = driver.execute_script("return document.documentElement.scrollHeight;")
            driver.set_window_size(width, min(height + 120, 4000))
            overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
            assert overflow <= 0, f"{path} at {width} px is {overflow} px too wide"
            assert driver.save_screenshot(str(artifacts / f"{name}-{width}.png"))
    driver.set_window_size(375, 900)
    for path in ("/jobs/new", "/secrets", "/keboola-setup"):
        driver.get(installation.base_url + path)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth;")
        assert overflow <= 0, f"{path} at 375 px is {overflow} px too wide"
    driver.set_window_size(1280, 900)


def test_a_read_token_sees_no_action_and_cannot_change_anything(browser: WebDriver, installation: Installation) -> None:
    driver = browser
    read_token = installation.cli("token", "create", "viewer", "--role", "read").strip().splitlines()[-1]
    sign_in(driver, installation, read_token)
    assert text_of(driver, ".who .role") == "READ"
    for path in ("/jobs", "/jobs/1", "/secrets"):
        driver.get(installation.base_url + path)
        assert driver.find_elements(By.CSS_SELECTOR, "main form[method=post], .actions, a[href='/jobs/new']") == []
    driver.get(installation.base_url + "/jobs/1")
    token = driver.find_element(By.CSS_SELECTOR, "header input[name=csrf_token]").get_attribute("value")
    denied = fetch_in_page(driver, "/jobs/1/delete", "POST", {"csrf_token": token})
    assert denied["status"] == 403
    assert installation.api("GET", "/api/jobs/1", token=read_token).status_code == 200
    api_denied = installation.api("POST", "/api/jobs/1/check", token=read_token)
    assert api_denied.status_code == 403 and api_denied.json()["status"] == "Forbidden"
    assert installation.api("GET", "/api/jobs/1").status_code == 200
    assert read_token not in driver.page_source
    storage = driver.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage);")
    cookies = " ".join(cookie["value"] for cookie in driver.get_cookies())
    assert read_token not in storage + cookies and installation.api_token not in storage + cookies
