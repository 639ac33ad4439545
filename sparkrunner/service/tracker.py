"""Follows running jobs' progress: a thread that asks each one's Spark UI every second.

The progress of a job is kept in memory only (it is a moment's reading, not a record): the last
reading of a job that has ended stays, for the last :data:`KEEP_ENDED` jobs, so a job that just
completed still shows how far it got.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import requests

from ..progress import Progress, read_progress
from ..states import JobStatus
from ..store import JobStore

log = logging.getLogger(__name__)

#: Seconds between two readings of a running job (the API promises at most 2 s old).
POLL_SECONDS = 1.0
#: Ended jobs whose last reading is kept.
KEEP_ENDED = 1000
#: Drivers asked at once.
WORKERS = 4


class ProgressTracker:
    """Reads the progress of every RUNNING job of ``store`` each ``interval`` seconds."""

    def __init__(self, store: JobStore, interval: float = POLL_SECONDS):
        self.store = store
        self.interval = interval
        self._latest: OrderedDict[str, Progress] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._http.trust_env = False  # a driver's UI is never reached through a proxy

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def get(self, job_id: str) -> Progress | None:
        """The job's latest progress; None when it is unknown."""
        with self._lock:
            return self._latest.get(job_id)

    def poll(self) -> None:
        """Reads every running job's progress once."""
        running, _ = self.store.list(status=[JobStatus.RUNNING], limit=-1)
        readable = [r for r in running if r.ui_url]
        if not readable:
            return
        with ThreadPoolExecutor(max_workers=min(WORKERS, len(readable))) as pool:
            # A warm job's UI is its server's, which serves one application: the driver's report
            # of it is not needed.
            readings = pool.map(lambda r: read_progress(r.ui_url, None if r.session_id else r.app_id,
                                                        r.session_id, self._http), readable)
            for record, progress in zip(readable, readings):
                if progress is not None:
                    self._keep(record.id, progress)

    def _keep(self, job_id: str, progress: Progress) -> None:
        with self._lock:
            self._latest[job_id] = progress
            self._latest.move_to_end(job_id)
            while len(self._latest) > KEEP_ENDED:
                self._latest.popitem(last=False)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.poll()
            except Exception:  # never stop following because one reading failed
                log.exception("Reading jobs' progress failed; trying again.")
