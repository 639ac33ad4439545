"""The dashboard in a real browser: headless Chromium driven by Selenium (Debian's ``chromium`` and
``chromium-driver``), against a live ``sparkrunner serve`` running real Spark jobs with their
Spark UI on: log in and out, list and filter, open a job and watch it progress to COMPLETE, read
its log, the ROC chart of a metrics job, cancel a running job, another user's job not shown.

Takes the README's screenshots (docs/dashboard-jobs.png, docs/dashboard-metrics-job.png).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, SCORE_SOURCE, make_job
from service_helpers import Service, sleepy_job, write_config

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKENS = {"ann": "ann-token-0123456789", "bob": "bob-token-0123456789"}
#: Where the screenshots go: the README's (docs/) only when asked, so that a test run leaves the
#: checkout as it found it (SPARKRUNNER_SCREENSHOTS=docs pytest tests/test_ui_browser.py).
DOCS = REPO / os.environ.get("SPARKRUNNER_SCREENSHOTS", "build/screenshots")

#: A score job of four Spark jobs, each of 8 slow tasks: a few seconds of progress to watch.
PROGRESS_SOURCE = '''\
import time
from pyspark.sql import SparkSession, functions as F
from pyspark.sql.types import LongType

# modelop.score
def score(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    slow = F.udf(lambda x: (time.sleep(0.3), x)[1], LongType())
    total = 0
    for step in range(4):
        frame = spark.range(0, 16, numPartitions=8).select(slow("id").alias("id"))
        total += frame.groupBy().sum("id").collect()[0][0]
    return {"recordsRead": 64, "recordsScored": 60, "recordsRejected": 4, "rowsWritten": 60, "total": total}
'''

#: A metrics job computing ModelOp's shape with Spark: ROC curve, AUC, confusion matrix, scores, drift.
METRICS_SOURCE = '''\
from pyspark.sql import SparkSession, functions as F

# modelop.metrics
def metrics(inputs, outputs, attachments):
    spark = SparkSession.builder.getOrCreate()
    df = spark.range(0, 4000).select("id", (F.rand(7) < 0.4).cast("int").alias("label"), F.rand(11).alias("noise"),
                                     (F.rand(13) * 80).alias("age"), (F.rand(17) * 500).alias("fare"))
    df = df.withColumn("probability", F.col("label") * 0.45 + F.col("noise") * 0.55).cache()
    thresholds = [i / 20 for i in range(21)]
    sums = []
    for i, t in enumerate(thresholds):
        above = F.col("probability") >= t
        sums += [F.sum((above & (F.col("label") == 1)).cast("int")).alias("tp%d" % i),
                 F.sum((above & (F.col("label") == 0)).cast("int")).alias("fp%d" % i)]
    row = df.agg(F.sum("label").alias("positives"), F.count(F.lit(1)).alias("rows"), *sums).first()
    positives, negatives = row["positives"], row["rows"] - row["positives"]
    roc = sorted({(row["fp%d" % i] / negatives, row["tp%d" % i] / positives) for i in range(len(thresholds))})
    auc = sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in zip(roc, roc[1:]))
    tp, fp = row["tp10"], row["fp10"]
    fn, tn = positives - tp, negatives - fp
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    halves = df.withColumn("half", (F.col("id") >= 2000).cast("int")).groupBy("half").agg(
        F.avg("age").alias("age"), F.avg("fare").alias("fare"), F.avg("noise").alias("noise")).collect()
    first, second = sorted(halves, key=lambda r: r["half"])
    drift = {f: {"mean_shift": abs(second[f] - first[f]) / max(abs(first[f]), 1e-9)} for f in ("age", "fare", "noise")}
    return {"auc": round(auc, 4), "accuracy": round((tp + tn) / row["rows"], 4),
            "precision": round(precision, 4), "recall": round(recall, 4),
            "f1_score": round(2 * precision * recall / (precision + recall), 4),
            "f2_score": round(5 * precision * recall / (4 * precision + recall), 4),
            "roc_curve": [{"fpr": f, "tpr": t} for f, t in roc],
            "confusion_matrix": [{"0": tn, "1": fp}, {"0": fn, "1": tp}],
            "data_drift": drift}
'''


def named(doc: dict, model: str) -> dict:
    """``doc`` with its model called ``model`` (what the dashboard lists)."""
    doc["model"]["storedModel"]["modelMetaData"]["name"] = model
    return doc


def browser_or_fail():
    """Headless Chromium under chromedriver, found by path; the test fails naming the packages
    when they are missing (the dashboard is tested in a browser or not at all)."""
    missing = [f"{path} (Debian package {package})" for path, package in
               ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")) if not path.exists()]
    if missing:
        pytest.fail("the dashboard's browser tests need " + " and ".join(missing)
                    + ": apt-get install chromium chromium-driver (.ci/run installs them)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    return webdriver.Chrome(service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("dashboard")
    extra = "  tokens:\n" + "".join(f"    {u}: {t}\n" for u, t in TOKENS.items())
    config = write_config(base / "sparkrunner.yaml", base / "data", max_jobs=2, extra=extra)
    # Progress is read from the driver's Spark UI: on, for these jobs (the port moves up from 4040).
    config.write_text(config.read_text().replace("spark.ui.enabled: 'false'", "spark.ui.enabled: 'true'"))
    svc = Service(base / "data", config=config).start()
    svc.headers = {"Authorization": f"Bearer {TOKENS['ann']}"}
    yield svc
    for job in svc.get("/jobs", params={"size": 100}).json()["jobs"]:
        if job["jobStatus"] in ("CREATED", "WAITING", "RUNNING"):
            svc.post(f"/jobs/{job['id']}/cancel")
    svc.stop()


@pytest.fixture(scope="module")
def chrome():
    driver = browser_or_fail()
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def jobs(service):
    """The jobs every test sees: ann's metrics job (ended) and bob's job."""
    metrics = service.submit(named(make_job(METRICS_SOURCE, name="titanic-metrics.py",
                                           jobType="MODEL_BATCH_TEST_JOB"), "titanic-metrics"))
    bob = service.submit(make_job(SCORE_SOURCE, name="bobs-model.py"),
                         Authorization=f"Bearer {TOKENS['bob']}")
    return {"metrics": metrics, "bob": bob}


def wait_until(check, timeout: float = 120, every: float = 0.25, what: str = "the condition"):
    """The first true value of check() (exceptions of a page reloading under us count as false)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
            if found:
                return found
        except (NoSuchElementException, StaleElementReferenceException):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(every)


def text_of(chrome, css: str) -> str:
    from selenium.webdriver.common.by import By

    return chrome.find_element(By.CSS_SELECTOR, css).text


def log_in(chrome, service, user: str = "ann", token: str | None = None) -> None:
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()  # a logged-in browser is sent on from the form
    chrome.get(service.url + "/ui/login")
    chrome.find_element(By.ID, "login-user").send_keys(user)
    chrome.find_element(By.ID, "login-token").send_keys(token or TOKENS[user])
    submit = chrome.find_element(By.ID, "login-submit")
    submit.click()
    # The next page: until the form is gone, the old page would answer every lookup.
    wait_until(lambda: _stale(submit), 10, what="the page after the login form")


def _stale(element) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        element.is_enabled()
        return False
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:  # asked mid-navigation, chromedriver says it its own way
        if "does not belong to the document" in str(exc):
            return True
        raise


def test_log_in_and_out(chrome, service):
    from selenium.webdriver.common.by import By

    chrome.delete_all_cookies()
    chrome.get(service.url + "/ui/jobs")
    assert chrome.current_url.endswith("/ui/login")  # sent to log in first
    log_in(chrome, service, "ann", "not-the-token-at-all")
    assert "wrong token" in text_of(chrome, "#login-error")
    log_in(chrome, service)
    wait_until(lambda: chrome.current_url.endswith("/ui/jobs"), 10, what="landing on the jobs list")
    assert text_of(chrome, "#user") == "ann"
    session = chrome.get_cookie("sparkrunner_session")
    assert session["httpOnly"] is True and session["sameSite"] == "Strict"
    chrome.find_element(By.ID, "logout").click()
    wait_until(lambda: chrome.current_url.endswith("/ui/login"), 10, what="back at the login form")
    chrome.get(service.url + "/ui/jobs")
    assert chrome.current_url.endswith("/ui/login")


def test_open_a_job_and_watch_it_progress_to_complete_then_read_its_log(chrome, service, jobs):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    log_in(chrome, service)
    job = service.submit(named(make_job(PROGRESS_SOURCE, name="slow-scoring.py"), "slow-scoring"))
    chrome.get(service.url + "/ui/jobs")
    link = wait_until(lambda: chrome.find_element(By.CSS_SELECTOR, f'tr[data-id="{job["id"]}"] a.job-link'),
                      10, what="the job in the list")
    link.click()
    wait_until(lambda: text_of(chrome, "#job-id") == job["id"], 10, what="the job's page")
    seen, spark_ui, state = [], None, None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            state = text_of(chrome, "#job-state")
            if state == "RUNNING":
                bars = chrome.find_elements(By.CSS_SELECTOR, '#progress [role="progressbar"]')
                if bars:
                    seen.append(float(bars[0].get_attribute("data-percent")))
                links = chrome.find_elements(By.ID, "spark-ui")
                if links:
                    spark_ui = links[0].get_attribute("href")
            elif state in ("COMPLETE", "ERROR", "CANCELLED"):
                break
        except WebDriverException:  # the page was reloading under us (it refreshes every 2 s)
            pass
        time.sleep(0.3)
    state = wait_until(lambda: text_of(chrome, "#job-state"), 10, what="the job's state")
    assert state == "COMPLETE", text_of(chrome, "body")
    assert spark_ui and spark_ui.startswith("http://"), "the Spark UI link while it ran"
    assert seen and any(0 < p < 100 for p in seen), f"no progress seen moving: {seen}"
    assert seen == sorted(seen) or max(seen) > min(seen)
    assert float(chrome.find_element(By.CSS_SELECTOR, '#progress [role="progressbar"]')
                 .get_attribute("data-percent")) == 100.0
    assert chrome.find_elements(By.ID, "spark-ui") == []  # gone with the driver
    # The log's tail: its last lines (Spark's shutdown lines may push the result line out of it).
    tail = text_of(chrome, "#log-tail").strip().splitlines()
    assert chrome.find_elements(By.ID, "records-chart")  # the scoring counts, drawn
    chrome.find_element(By.ID, "full-log").click()
    log = wait_until(lambda: text_of(chrome, "#log"), 10, what="the whole log")
    assert "sparkrunner: command:" in log and "sparkrunner: application:" in log and "sparkrunner: result:" in log
    assert tail and tail[-1] in log  # the tail is the log's end


def test_the_roc_chart_of_a_metrics_job(chrome, service, jobs):
    from selenium.webdriver.common.by import By

    log_in(chrome, service)
    service.wait_for(jobs["metrics"]["id"], {"COMPLETE"}, timeout=240)
    chrome.set_window_size(1280, 1350)
    chrome.get(service.url + f"/ui/jobs/{jobs['metrics']['id']}")
    roc = chrome.find_element(By.ID, "roc-curve")
    assert roc.is_displayed() and roc.size["width"] >= 250
    points = roc.find_element(By.CSS_SELECTOR, "polyline.roc-line").get_attribute("points").split()
    assert len(points) >= 5
    assert "AUC" in roc.get_attribute("aria-label")
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#confusion-matrix rect.cell")) == 4
    assert chrome.find_element(By.ID, "scores-chart").is_displayed()
    assert "data_drift per feature" in text_of(chrome, "#charts")
    assert "metrics function metrics()" in text_of(chrome, "#summary")
    DOCS.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(DOCS / "dashboard-metrics-job.png"))
    chrome.set_window_size(1280, 1000)


def test_cancel_a_running_job(chrome, service, jobs):
    from selenium.webdriver.common.by import By

    log_in(chrome, service)
    job = service.submit(named(sleepy_job(300), "sleepy"))
    service.wait_for(job["id"], {"RUNNING"}, timeout=240)
    chrome.get(service.url + f"/ui/jobs/{job['id']}")
    chrome.find_element(By.ID, "cancel").click()
    wait_until(lambda: text_of(chrome, "#job-state") == "CANCELLED", 60, what="the job cancelled")
    assert text_of(chrome, "#reason") == "cancelled by user"
    assert service.job(job["id"])["jobStatus"] == "CANCELLED"


def test_list_filter_and_another_users_job_not_shown(chrome, service, jobs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    log_in(chrome, service)
    as_bob = {"Authorization": f"Bearer {TOKENS['bob']}"}
    wait_until(lambda: service.get(f"/jobs/{jobs['bob']['id']}", headers=as_bob).json()["jobStatus"]
               in ("COMPLETE", "ERROR"), 240, 1, what="bob's job ending")
    chrome.get(service.url + "/ui/jobs")
    rows = chrome.find_elements(By.CSS_SELECTOR, "#jobs tr.job")
    ids = {row.get_attribute("data-id") for row in rows}
    assert jobs["metrics"]["id"] in ids and jobs["bob"]["id"] not in ids
    assert len(ids) == requests.get(service.url + "/jobs", headers=service.headers).json()["total"]
    Select(chrome.find_element(By.ID, "filter-type")).select_by_value("MODEL_BATCH_TEST_JOB")
    chrome.find_element(By.ID, "filter-apply").click()
    wait_until(lambda: "type=MODEL_BATCH_TEST_JOB" in chrome.current_url, 10, what="the type filter")
    rows = chrome.find_elements(By.CSS_SELECTOR, "#jobs tr.job")
    assert [r.get_attribute("data-id") for r in rows] == [jobs["metrics"]["id"]]
    Select(chrome.find_element(By.ID, "filter-type")).select_by_value("")
    Select(chrome.find_element(By.ID, "filter-state")).select_by_value("CANCELLED")
    chrome.find_element(By.ID, "filter-apply").click()
    wait_until(lambda: "state=CANCELLED" in chrome.current_url, 10, what="the state filter")
    states = {r.get_attribute("data-state") for r in chrome.find_elements(By.CSS_SELECTOR, "#jobs tr.job")}
    assert states == {"CANCELLED"}
    # Bob's job, asked for by its address, does not exist for ann.
    chrome.get(service.url + f"/ui/jobs/{jobs['bob']['id']}")
    assert "There is no job" in text_of(chrome, "#missing")
    # The list, for the README.
    chrome.get(service.url + "/ui/jobs")
    DOCS.mkdir(parents=True, exist_ok=True)
    chrome.save_screenshot(str(DOCS / "dashboard-jobs.png"))
