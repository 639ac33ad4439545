"""The SQLite job store: one function moves states; terminal states never change."""

import sqlite3
import threading

import pytest

from sparkrunner.errors import IllegalMove, JobNotFound
from sparkrunner.states import JobStatus, can_move
from sparkrunner.store import JobStore


@pytest.fixture
def store(tmp_path):
    s = JobStore(tmp_path / "jobs.db")
    yield s
    s.close()


def new(store, job_id="j1", key=None, owner=""):
    return store.create(id=job_id, owner=owner, idempotency_key=key, job_type="MODEL_BATCH_JOB",
                        name="m", document={"a": 1}, timeout_seconds=None)


def test_a_job_moves_forward_and_saves_fields_with_the_move(store):
    record, created = new(store)
    assert created and record.status is JobStatus.CREATED
    assert store.move("j1", JobStatus.WAITING, started=5.0).started == 5.0
    assert store.move("j1", JobStatus.WAITING) is None  # no change, reported as none
    record = store.move("j1", JobStatus.RUNNING, app_id="local-1")
    assert (record.status, record.app_id) == (JobStatus.RUNNING, "local-1")
    record = store.move("j1", JobStatus.COMPLETE, "exit code 0", ended=9.0, exit_code=0)
    assert (record.status, record.reason, record.exit_code) == (JobStatus.COMPLETE, "exit code 0", 0)


@pytest.mark.parametrize("end", [JobStatus.COMPLETE, JobStatus.ERROR, JobStatus.CANCELLED])
def test_terminal_states_never_change(store, end):
    new(store)
    store.move("j1", end, "because")
    for target in JobStatus:
        if target is end:
            continue
        with pytest.raises(IllegalMove):
            store.move("j1", target, "again")
    assert store.get("j1").reason == "because"


def test_illegal_moves_and_missing_reasons_are_refused(store):
    new(store)
    store.move("j1", JobStatus.WAITING)
    with pytest.raises(IllegalMove, match="cannot move from WAITING to CREATED"):
        store.move("j1", JobStatus.CREATED)
    with pytest.raises(ValueError, match="needs a reason"):
        store.move("j1", JobStatus.ERROR)
    with pytest.raises(ValueError, match="not updatable"):
        store.update("j1", status="COMPLETE")
    with pytest.raises(JobNotFound):
        store.move("nope", JobStatus.WAITING)
    assert not can_move(JobStatus.RUNNING, JobStatus.WAITING)


def test_an_idempotency_key_returns_the_first_job_per_owner(store):
    first, created = new(store, "j1", key="k")
    again, created_again = new(store, "j2", key="k")
    assert created and not created_again and again.id == "j1"
    other, created_other = new(store, "j3", key="k", owner="bob")
    assert created_other and other.id == "j3"
    with pytest.raises(JobNotFound):
        store.get("j2")


def test_lists_filter_page_and_survive_reopening(store, tmp_path):
    for i in range(5):
        new(store, f"j{i}")
    store.move("j1", JobStatus.CANCELLED, "cancelled by user")
    page, total = store.list(offset=1, limit=2)
    assert [r.id for r in page] == ["j3", "j2"] and total == 5
    assert [r.id for r in store.unfinished()] == ["j0", "j2", "j3", "j4"]
    store.close()
    reopened = JobStore(tmp_path / "jobs.db")
    assert reopened.get("j1").reason == "cancelled by user"
    assert (tmp_path / "jobs.db").stat().st_mode & 0o777 == 0o600
    reopened.close()


def test_concurrent_moves_let_exactly_one_win(store):
    new(store)
    store.move("j1", JobStatus.WAITING)
    outcomes = []

    def end(status):
        try:
            outcomes.append(store.move("j1", status, f"by {status}"))
        except IllegalMove:
            outcomes.append("refused")

    threads = [threading.Thread(target=end, args=(s,)) for s in
               (JobStatus.COMPLETE, JobStatus.ERROR, JobStatus.CANCELLED) * 5]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o not in ("refused", None)]
    assert len(winners) == 1  # the rest were refused, or found it already in their state
    assert outcomes.count("refused") == 10
    assert store.get("j1").status is winners[0].status


def test_sqlite_errors_become_store_errors_saying_what_failed(tmp_path):
    from sparkrunner.errors import StoreError

    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(StoreError, match="could not be opened: unable to open database file") as caught:
        JobStore(tmp_path / "a-directory.db")
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    store = JobStore(tmp_path / "jobs.db")
    store.close()
    with pytest.raises(StoreError, match=r"jobs.db' could not be read: Cannot operate on a closed database"):
        store.get("j1")
    with pytest.raises(StoreError, match="could not save the change"):
        store.create(id="j1", owner="", idempotency_key=None, job_type="MODEL_BATCH_JOB", name="m",
                     document={}, timeout_seconds=None)
