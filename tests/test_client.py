"""The pieces every client of the service shares (the CLI, the Airflow hook, operator and
trigger), and the CLI's exit codes, against a stand-in HTTP server: no service, no JVM."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sparkrunner import errors
from sparkrunner.cli import main
from sparkrunner.cli.exits import EXIT_CODES, exit_code
from sparkrunner.client import Client, LogCursor, Tolerance, error_from_answer, unreachable
from sparkrunner.errors import RequestRefused, ServiceUnavailable


class Answers(BaseHTTPRequestHandler):
    """Answers every request with the next of ``server.answers``: (status, body)."""

    def do_GET(self):
        status, body = self.server.answers.pop(0) if len(self.server.answers) > 1 else self.server.answers[0]
        self.server.paths.append(self.path)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    httpd.answers, httpd.paths = [(200, {})], []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)  # a quick shutdown
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once it is closed


# --- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("status,kind", [(0, ServiceUnavailable), (429, ServiceUnavailable),
                                         (500, ServiceUnavailable), (503, ServiceUnavailable),
                                         (400, RequestRefused), (401, RequestRefused),
                                         (404, RequestRefused), (422, RequestRefused)])
def test_an_answer_s_status_decides_the_kind_of_error(status, kind):
    error = errors.api_error(status, "detail")
    assert type(error) is kind and error.status == status
    assert error.transient is (kind is ServiceUnavailable)


def test_the_service_s_detail_and_problems_are_read_from_its_answer():
    error = error_from_answer(422, json.dumps({"detail": "the job is invalid: 1 problem(s)",
                                               "errors": [{"path": "$.model", "message": "missing"}]}))
    assert str(error) == "HTTP 422: the job is invalid: 1 problem(s)"
    assert error.errors == [{"path": "$.model", "message": "missing"}]
    assert str(error_from_answer(502, "<html>Bad Gateway</html>\n")) == "HTTP 502: <html>Bad Gateway</html>"
    assert error_from_answer(500, json.dumps(["not", "an", "object"])).detail == '["not", "an", "object"]'
    assert len(error_from_answer(500, "x" * 2000).detail) == 500


def test_a_request_that_gets_no_answer_is_service_unavailable():
    url = closed_port_url()
    with pytest.raises(ServiceUnavailable, match=f"cannot reach the sparkrunner service at {url}: ") as caught:
        Client(url).get("some-id")
    assert caught.value.status == 0
    assert str(unreachable("http://x", TimeoutError())) == "cannot reach the sparkrunner service at http://x: TimeoutError()"


# --- reading a log forward -----------------------------------------------------------------------

class PagedLog:
    """A log served as GET /jobs/{id}/log serves it, growing between reads."""

    def __init__(self, lines):
        self.lines, self.asked = list(lines), []

    def page(self, start: int, size: int) -> dict:
        self.asked.append((start, size))
        return {"from": start, "total": len(self.lines), "log": self.lines[start:start + size]}


def test_the_log_cursor_reads_page_by_page_and_goes_on_from_where_it_stopped():
    log = PagedLog([f"line {i}" for i in range(5)])
    cursor = LogCursor(log.page, size=2)
    assert list(cursor.read()) == [f"line {i}" for i in range(5)]
    assert cursor.position == 5 and log.asked == [(0, 2), (2, 2), (4, 2)]
    assert list(cursor.read()) == []
    log.lines += ["line 5", "line 6"]
    assert list(cursor.read()) == ["line 5", "line 6"]


def test_the_log_cursor_loses_and_repeats_nothing_when_a_page_fails():
    log = PagedLog([f"line {i}" for i in range(4)])
    fail = [False, True]

    def page(start, size):
        if fail and fail.pop(0):
            raise ServiceUnavailable(503, "restarting")
        return log.page(start, size)

    cursor = LogCursor(page, size=2)
    got = []
    with pytest.raises(ServiceUnavailable):
        for line in cursor.read():
            got.append(line)
    assert got == ["line 0", "line 1"] and cursor.position == 2
    got += cursor.read()
    assert got == [f"line {i}" for i in range(4)]


def test_the_log_cursor_stops_at_an_empty_page_even_if_the_total_says_more():
    cursor = LogCursor(lambda start, size: {"from": start, "total": 10, "log": []})
    assert list(cursor.read()) == [] and cursor.position == 0


def test_tolerance_waits_out_transient_failures_in_a_row_only():
    tolerance = Tolerance(2)
    assert tolerance.failed(ServiceUnavailable(0, "down")) and tolerance.failed(ServiceUnavailable(503, "x"))
    assert not tolerance.failed(ServiceUnavailable(503, "x"))  # the third in a row
    tolerance.succeeded()
    assert tolerance.failed(ServiceUnavailable(503, "x"))
    assert not Tolerance(5).failed(RequestRefused(404, "no job"))


def test_waiting_for_a_job_rides_out_a_restart_and_copies_its_log(server):
    job = {"id": "j", "jobStatus": "RUNNING"}
    done = {"id": "j", "jobStatus": "COMPLETE"}
    server.answers = [(200, job), (200, {"from": 0, "total": 1, "log": ["one"]}),
                      (503, {"detail": "restarting"}),
                      (200, done), (200, {"from": 1, "total": 2, "log": ["two"]})]
    lines = []
    assert Client(server.url).wait("j", poll_seconds=0.01, on_line=lines.append) == done
    assert lines == ["one", "two"]


def test_waiting_gives_up_on_a_refusal_at_once(server):
    server.answers = [(404, {"detail": "no job with id 'j'"})]
    with pytest.raises(RequestRefused, match="no job with id"):
        Client(server.url).wait("j", poll_seconds=0.01)
    assert len(server.paths) == 1


# --- the command line's exit codes ---------------------------------------------------------------

def test_a_service_that_cannot_be_reached_exits_3_not_2(capsys):
    assert main(["status", "j", "--url", closed_port_url()]) == 3
    assert "error: cannot reach the sparkrunner service at " in capsys.readouterr().err


@pytest.mark.parametrize("status,code", [(500, 3), (503, 3), (429, 3), (404, 2), (401, 2)])
def test_an_error_answer_exits_by_its_kind(server, status, code, capsys):
    server.answers = [(status, {"detail": "told so"})]
    assert main(["status", "j", "--url", server.url]) == code
    assert f"error: HTTP {status}: told so" in capsys.readouterr().err


def test_a_refused_job_exits_2_with_every_problem(server, tmp_path, capsys):
    server.answers = [(422, {"detail": "the job is invalid: 2 problem(s)",
                             "errors": [{"path": "$.a", "message": "bad"}, {"path": "$.b", "message": "worse"}]})]
    job = tmp_path / "job.json"
    job.write_text("{}")
    assert main(["submit", str(job), "--url", server.url]) == 2
    assert capsys.readouterr().err == "error: the job is invalid (2 problems):\n  $.a: bad\n  $.b: worse\n"


def test_logs_pages_through_the_whole_log(server, capsys):
    server.answers = [(200, {"from": 0, "total": 3, "log": ["a", "b"]}), (200, {"from": 2, "total": 3, "log": ["c"]})]
    assert main(["logs", "j", "--url", server.url]) == 0
    assert capsys.readouterr().out == "a\nb\nc\n"
    assert server.paths == ["/jobs/j/log?size=1000&from=0", "/jobs/j/log?size=1000&from=2"]


def test_every_error_class_has_its_exit_code():
    kinds = [k for k in vars(errors).values() if isinstance(k, type) and issubclass(k, errors.SparkRunnerError)]
    unlisted = [k.__name__ for k in kinds if not any(issubclass(k, listed) for listed, _ in EXIT_CODES)]
    # The bases stand for their kinds; IllegalMove never leaves the service, MlflowModelError
    # never leaves admission (it becomes a FieldError of the job).
    assert sorted(unlisted) == ["ApiError", "IllegalMove", "MlflowModelError", "SparkRunnerError"]
    assert exit_code(errors.ClusterUsageError("x")) == 2 and exit_code(errors.ClusterError("x")) == 1
    assert exit_code(errors.StoreError("x")) == 3 and exit_code(errors.DataDirInUse("x")) == 2
    assert exit_code(errors.HdfsCheckFailed([])) == 1 and exit_code(errors.ConfigError("x")) == 2
    assert exit_code(errors.EnvironmentFailed("x")) == 1
