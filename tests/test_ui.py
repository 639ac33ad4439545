"""The dashboard at /ui, rendered by the in-process service with the stand-in spark-submit (no
JVM, no browser): logins and their cookie, the list's filters and pages, a job's page with its
charts, progress and log, the cancel button's protection, escaping. The browser tests are
test_ui_browser.py."""

from __future__ import annotations

import re
import time

import pytest
import requests

from sparkrunner.ui.results import charts_of, confusion_rows, drift_values, roc_points
from service_helpers import InProcessService
from support.spark_submit_standin import standin_job

TOKENS = {"ann": "ann-token-0123456789", "bob": "bob-token-0123456789"}
EXTRA = "  tokens:\n" + "".join(f"    {user}: {token}\n" for user, token in TOKENS.items())
METRICS_SOURCE = "# modelop.metrics\ndef metrics(inputs, outputs, attachments):\n    return {}\n"
#: A metrics job's result in ModelOp's shape.
MODELOP_METRICS = {
    "auc": 0.8731, "accuracy": 0.81, "precision": 0.78, "recall": 0.7, "f1_score": 0.74, "f2_score": 0.71,
    "roc_curve": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.1, "tpr": 0.55}, {"fpr": 0.3, "tpr": 0.82},
                  {"fpr": 0.6, "tpr": 0.95}, {"fpr": 1.0, "tpr": 1.0}],
    "confusion_matrix": [{"0": 480, "1": 44}, {"0": 61, "1": 253}],
    "data_drift": {"age": {"ks_statistic": 0.12, "p_value": 0.03}, "fare": {"ks_statistic": 0.31, "p_value": 0.0},
                   "pclass": {"ks_statistic": 0.05, "p_value": 0.6}},
}


@pytest.fixture
def service(tmp_path, standin_spark_home):
    svc = InProcessService(tmp_path / "data", spark_home=standin_spark_home, extra=EXTRA).start()
    yield svc
    svc.stop()


def api(service, user: str) -> dict:
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def browser(service, user: str | None = "ann") -> requests.Session:
    """A logged-in client, as a browser holds the cookie."""
    session = requests.Session()
    if user is not None:
        answer = session.post(service.url + "/ui/login", data={"user": user, "token": TOKENS[user]},
                              headers={"Origin": service.url}, allow_redirects=False)
        assert answer.status_code == 303, answer.text
    return session


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_pages_need_a_login_and_the_cookie_is_httponly_and_samesite(service):
    anonymous = requests.Session()
    answer = anonymous.get(service.url + "/ui/jobs", allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert "Log in" in anonymous.get(service.url + "/ui/login").text
    wrong = anonymous.post(service.url + "/ui/login", data={"user": "ann", "token": TOKENS["bob"]},
                           allow_redirects=False)
    assert wrong.status_code == 401 and "wrong token" in wrong.text
    good = anonymous.post(service.url + "/ui/login", data={"user": "ann", "token": TOKENS["ann"]},
                          allow_redirects=False)
    cookie = good.headers["set-cookie"]
    assert good.status_code == 303 and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    # A cookie is no way into the API, and a token is no way into the dashboard.
    assert anonymous.get(service.url + "/jobs").status_code == 401
    assert requests.get(service.url + "/ui/jobs", headers=api(service, "ann"), allow_redirects=False).status_code == 303
    # A forged or altered cookie is refused.
    forged = requests.Session()
    forged.cookies.set("sparkrunner_session", anonymous.cookies["sparkrunner_session"][:-2] + "xx", path="/ui")
    assert forged.get(service.url + "/ui/jobs", allow_redirects=False).status_code == 303


def test_login_from_another_site_is_refused(service):
    answer = requests.post(service.url + "/ui/login", data={"user": "ann", "token": TOKENS["ann"]},
                           headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_list_filters_pages_and_shows_only_the_users_jobs(service):
    mine = [service.submit(standin_job(name=f"m{n}.py"), **api(service, "ann")) for n in range(22)]
    failed = service.submit(standin_job(exit=1, error="boom"), **api(service, "ann"))
    theirs = service.submit(standin_job(), **api(service, "bob"))
    service.headers = api(service, "ann")
    for job in (*mine, failed):
        service.wait_for(job["id"], {"COMPLETE", "ERROR"}, timeout=60)
    ann = browser(service)
    first = ann.get(service.url + "/ui/jobs").text
    assert "23 jobs" in first and "page 1 of 2" in first
    assert first.count('class="job"') == 20 and theirs["id"] not in first
    assert 'http-equiv="refresh"' in first
    second = ann.get(service.url + "/ui/jobs?page=2").text
    assert second.count('class="job"') == 3 and mine[0]["id"] in second
    errors = ann.get(service.url + "/ui/jobs?state=ERROR").text
    assert errors.count('class="job"') == 1 and failed["id"] in errors
    assert ann.get(service.url + "/ui/jobs?type=MODEL_BATCH_TEST_JOB").text.count('class="job"') == 0
    # Another user's job page does not exist for ann.
    assert ann.get(service.url + f"/ui/jobs/{theirs['id']}").status_code == 404


def test_a_metrics_jobs_page_draws_its_result(service):
    service.headers = api(service, "ann")
    job = service.submit(standin_job(source=METRICS_SOURCE, jobType="MODEL_BATCH_TEST_JOB", result=MODELOP_METRICS,
                                     name="titanic-metrics.py"))
    service.wait_for(job["id"], {"COMPLETE"}, timeout=30)
    page = browser(service).get(service.url + f"/ui/jobs/{job['id']}").text
    assert 'id="roc-curve"' in page and "AUC 0.873" in page
    polyline = re.search(r'class="roc-line" points="([^"]+)"', page).group(1)
    assert len(polyline.split()) == 5
    assert page.count('class="cell"') == 4 and ">480<" in page and ">253<" in page
    assert 'id="scores-chart"' in page and "f2_score" in page
    assert "data_drift per feature" in page and ">fare<" in page
    assert "metrics function metrics() in titanic-metrics.py" in page
    assert 'id="log-tail"' in page and "sparkrunner: result:" in page
    assert 'http-equiv="refresh"' not in page  # it has ended: nothing more to see
    assert 'id="cancel"' not in page and 'id="spark-ui"' not in page
    assert "<script" not in page


def test_a_running_jobs_page_shows_progress_spark_ui_and_a_protected_cancel(service):
    service.headers = api(service, "ann")
    job = service.submit(standin_job(seconds=60, ui_jobs=4))
    service.wait_for(job["id"], {"RUNNING"}, timeout=30)
    ann = browser(service)
    page = ""
    for _ in range(40):
        page = ann.get(service.url + f"/ui/jobs/{job['id']}").text
        if 'id="progress-text"' in page:
            break
        time.sleep(0.25)
    assert 'role="progressbar"' in page and "tasks " in page and "/40" in page
    assert 'id="spark-ui" href="http://127.0.0.1:' in page
    assert 'content="2"' in page  # refreshes itself every 2 s
    cancel = service.url + f"/ui/jobs/{job['id']}/cancel"
    token = csrf_of(page)
    # No CSRF token, a wrong one, or another site's form: refused, and the job runs on.
    assert ann.post(cancel, data={}, allow_redirects=False).status_code == 403
    assert ann.post(cancel, data={"csrf": "x" + token[1:]}, allow_redirects=False).status_code == 403
    assert ann.post(cancel, data={"csrf": token}, headers={"Origin": "https://evil.example"},
                    allow_redirects=False).status_code == 403
    assert requests.post(cancel, data={"csrf": token}, allow_redirects=False).status_code == 403  # no cookie
    assert service.job(job["id"])["jobStatus"] == "RUNNING"
    # Bob cannot cancel ann's job with his own session.
    bob = browser(service, "bob")
    bob_token = csrf_of(bob.get(service.url + "/ui/jobs").text)
    assert bob.post(cancel, data={"csrf": bob_token}, allow_redirects=False).status_code == 404
    answer = ann.post(cancel, data={"csrf": token}, headers={"Origin": service.url}, allow_redirects=False)
    assert answer.status_code == 303
    assert service.wait_for(job["id"], {"CANCELLED"}, timeout=30)["reason"] == "cancelled by user"


def test_logout_ends_the_session(service):
    ann = browser(service)
    page = ann.get(service.url + "/ui/jobs").text
    assert ann.post(service.url + "/ui/logout", data={}, allow_redirects=False).status_code == 403
    answer = ann.post(service.url + "/ui/logout", data={"csrf": csrf_of(page)}, allow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/login"
    assert ann.get(service.url + "/ui/jobs", allow_redirects=False).status_code == 303


def test_what_a_job_names_is_escaped(service):
    service.headers = api(service, "ann")
    evil = "<script>alert(1)</script>"
    job = service.submit(standin_job(source=METRICS_SOURCE, jobType="MODEL_BATCH_TEST_JOB",
                                     result={"data_drift": {evil: 0.5}, "confusion_matrix": {evil: {evil: 1}}},
                                     error=None, lines=1))
    service.wait_for(job["id"], {"COMPLETE"}, timeout=30)
    page = browser(service).get(service.url + f"/ui/jobs/{job['id']}").text
    assert evil not in page and "&lt;script&gt;" in page


def test_result_shapes():
    assert roc_points([{"fpr": 0, "tpr": 0}, {"fpr": 1, "tpr": 1}]) == [(0.0, 0.0), (1.0, 1.0)]
    assert roc_points([{"fpr": "a", "tpr": 0}]) is None and roc_points([]) is None
    assert confusion_rows([[5, 1], [2, 7]]) == ([[5.0, 1.0], [2.0, 7.0]], ["0", "1"])
    assert confusion_rows({"yes": {"yes": 3, "no": 1}, "no": {"yes": 0, "no": 4}}) == ([[3.0, 1.0], [0.0, 4.0]], ["yes", "no"])
    assert confusion_rows([[1, 2, 3], [4, 5, 6]]) is None  # not square
    assert drift_values({"age": 0.2, "fare": {"p_value": 0.01}}) == [("age", 0.2), ("fare", 0.01)]
    titles = [c.title for c in charts_of(MODELOP_METRICS)]
    assert titles == ["ROC curve", "Confusion matrix", "Scores", "Drift per feature (data_drift)"]
    counts = charts_of({"recordsRead": 100, "recordsScored": 97, "recordsRejected": 3, "rowsWritten": 97})
    assert [c.title for c in counts] == ["Records"] and "recordsRejected" in counts[0].svg
    assert charts_of([1, 2]) == [] and charts_of({"auc": True}) == []


def test_without_tokens_the_dashboard_is_open(tmp_path, standin_spark_home):
    svc = InProcessService(tmp_path / "open", spark_home=standin_spark_home).start()
    try:
        job = svc.submit(standin_job())
        svc.wait_for(job["id"], {"COMPLETE"}, timeout=30)
        page = requests.get(svc.url + "/ui/jobs").text
        assert job["id"] in page and "authentication is off" in page
    finally:
        svc.stop()
