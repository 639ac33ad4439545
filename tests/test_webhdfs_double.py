"""The WebHDFS test server against both real clients: the `hdfs` package and Spark's own.

It answers as a NameNode does, JSON declared as such, and Spark 4.3's own client fails on that
(the e2e tests at the end show it). The other Spark tests run it without the header, the mode
tests/test_distributed.py uses for data on executors.
"""

import csv
import hashlib
import http.client
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hdfs import InsecureClient
from hdfs.util import HdfsError

from support.webhdfs import WebHdfsError, WebHdfsServer

REPO = Path(__file__).resolve().parent.parent
ROWS = [(1, "alice", 0.5), (2, "Smith, J.", 1.25), (3, "zoë", -2.0)]
CSV_TEXT = 'id,name,score\n1,alice,0.5\n2,"Smith, J.",1.25\n3,zoë,-2.0\n'
SCHEMA = "id INT, name STRING, score DOUBLE"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "hdfs"
    root.mkdir()
    with WebHdfsServer(root) as running:
        yield running


@pytest.fixture
def client(server):
    return InsecureClient(server.url, user="sparkrunner")


@pytest.fixture
def lenient_server(tmp_path):
    """The server without the JSON Content-Type, as Spark 4.3's own client needs it."""
    root = tmp_path / "hdfs-lenient"
    root.mkdir()
    with WebHdfsServer(root, json_content_type=False) as running:
        yield running


def raw_request(server, method, path):
    """(status, headers, JSON body) of one request sent exactly as written, without URL cleanup."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.request(method, path)
        res = conn.getresponse()
        return res.status, dict(res.getheaders()), json.loads(res.read() or b"null")
    finally:
        conn.close()


# --- the hdfs package ----------------------------------------------------------------------------

def test_makedirs_and_upload_store_the_file_on_disk(server, client, tmp_path):
    local = tmp_path / "in.csv"
    local.write_text(CSV_TEXT, encoding="utf-8")
    client.makedirs("/data/raw", permission="750")
    assert client.upload("/data/raw/in.csv", str(local)) == "/data/raw/in.csv"

    assert server.local_path("/data/raw/in.csv").read_text(encoding="utf-8") == CSV_TEXT
    assert client.status("/data/raw")["type"] == "DIRECTORY"
    assert client.status("/data/raw")["permission"] == "750"
    with client.read("/data/raw/in.csv", encoding="utf-8") as reader:
        assert reader.read() == CSV_TEXT
    assert ("PUT", "MKDIRS") in server.requests


def test_write_from_a_generator_arrives_whole(server, client):
    pieces = [bytes([n]) * 10_000 for n in range(50)]  # chunked upload, 500 kB
    client.write("/gen/blob.bin", data=(piece for piece in pieces))

    assert server.local_path("/gen/blob.bin").read_bytes() == b"".join(pieces)
    assert client.status("/gen/blob.bin")["length"] == 500_000
    # Both steps of CREATE: the namenode's 307, then the data.
    assert server.requests.count(("PUT", "CREATE")) == 2


def test_read_with_offset_and_length(client):
    client.write("/f.txt", data=b"0123456789abcdef")
    with client.read("/f.txt", offset=10) as reader:
        assert reader.read() == b"abcdef"
    with client.read("/f.txt", offset=3, length=4) as reader:
        assert reader.read() == b"3456"
    with client.read("/f.txt", offset=16) as reader:
        assert reader.read() == b""


def test_list_and_status(client):
    client.write("/d/b.txt", data=b"bb")
    client.write("/d/a.txt", data=b"a")
    client.makedirs("/d/sub")

    assert client.list("/d") == ["a.txt", "b.txt", "sub"]
    listed = dict(client.list("/d", status=True))
    assert (listed["a.txt"]["type"], listed["a.txt"]["length"]) == ("FILE", 1)
    assert listed["sub"]["type"] == "DIRECTORY"
    status = client.status("/d/b.txt")
    assert (status["length"], status["owner"], status["pathSuffix"]) == (2, "sparkrunner", "")
    assert (status["permission"], status["replication"], status["blockSize"]) == ("644", 1, 128 * 2**20)
    assert client.status("/d")["childrenNum"] == 3
    assert client.status("/d/missing", strict=False) is None
    with pytest.raises(HdfsError, match="is not a directory"):
        client.list("/d/a.txt")


def test_content_summary(client):
    client.write("/c/one.txt", data=b"12345")
    client.write("/c/deep/two.txt", data=b"123")

    summary = client.content("/c")
    assert (summary["directoryCount"], summary["fileCount"], summary["length"]) == (2, 2, 8)
    assert client.content("/c/one.txt")["fileCount"] == 1
    assert client.content("/c/missing", strict=False) is None


def hdfs_md5_of_crc32(data: bytes) -> str:
    """HDFS's checksum of a one-block file, recomputed from its definition."""
    crcs = b"".join(struct.pack(">I", zlib.crc32(data[i:i + 512])) for i in range(0, len(data), 512))
    return (struct.pack(">iq", 512, 0) + hashlib.md5(hashlib.md5(crcs).digest()).digest()).hex()


def test_checksum_follows_the_hdfs_definition_and_changes_on_append(client):
    data = bytes(range(256)) * 5  # spans three 512-byte CRC chunks
    client.write("/sum.bin", data=data)

    checksum = client.checksum("/sum.bin")
    assert checksum == {"algorithm": "MD5-of-0MD5-of-512CRC32", "bytes": hdfs_md5_of_crc32(data),
                        "length": 28}
    client.write("/sum.bin", data=b"!", append=True)
    assert client.checksum("/sum.bin")["bytes"] == hdfs_md5_of_crc32(data + b"!")


def test_append_adds_to_the_end(server, client):
    client.write("/log.txt", data=b"first\n")
    client.write("/log.txt", data=b"second\n", append=True)

    assert server.local_path("/log.txt").read_bytes() == b"first\nsecond\n"
    assert server.requests.count(("POST", "APPEND")) == 2
    with pytest.raises(HdfsError, match="does not exist"):
        client.write("/nope.txt", data=b"x", append=True)


def test_rename_follows_hdfs_semantics(server, client):
    client.write("/src/a.txt", data=b"A")
    client.write("/other/b.txt", data=b"B")
    client.makedirs("/dest")

    client.rename("/src/a.txt", "/src/renamed.txt")
    assert server.local_path("/src/renamed.txt").read_bytes() == b"A"
    assert not server.local_path("/src/a.txt").exists()
    client.rename("/src/renamed.txt", "/dest")  # an existing directory: moved under it
    assert server.local_path("/dest/renamed.txt").read_bytes() == b"A"
    client.rename("/other", "/dest")  # directories too, with their contents
    assert server.local_path("/dest/other/b.txt").read_bytes() == b"B"

    for src, dst in [("/missing", "/x"), ("/dest/renamed.txt", "/no/parent/x"),
                     ("/dest", "/dest/other/inside"), ("/dest/other/b.txt", "/dest/renamed.txt")]:
        with pytest.raises(HdfsError, match="Unable to rename"):
            client.rename(src, dst)
    assert server.local_path("/dest/renamed.txt").read_bytes() == b"A"


def test_set_permission(client):
    client.write("/secret.txt", data=b"s")
    client.set_permission("/secret.txt", "600")

    assert client.status("/secret.txt")["permission"] == "600"
    assert dict(client.list("/", status=True))["secret.txt"]["permission"] == "600"
    with pytest.raises(HdfsError, match="permission"):
        client.set_permission("/secret.txt", "999")
    with pytest.raises(HdfsError, match="does not exist"):
        client.set_permission("/missing", "600")


def test_delete(server, client):
    client.write("/tree/a/b/c.txt", data=b"c")
    client.write("/tree/d.txt", data=b"d")

    with pytest.raises(HdfsError) as info:
        client.delete("/tree")
    assert info.value.exception == "PathIsNotEmptyDirectoryException"
    assert server.local_path("/tree/a/b/c.txt").exists()
    assert client.delete("/tree", recursive=True) is True
    assert not server.local_path("/tree").exists()
    assert client.delete("/tree", recursive=True) is False
    assert client.delete("/", recursive=True) is False
    assert server.local_path("/").is_dir()


def test_reading_a_missing_path_raises_file_not_found(client):
    with pytest.raises(HdfsError) as info:
        with client.read("/no/such/file.csv") as reader:
            reader.read()
    assert info.value.exception == "FileNotFoundException"
    assert "/no/such/file.csv does not exist" in info.value.message


def test_create_without_overwrite_keeps_the_existing_file(server, client):
    client.write("/once.txt", data=b"original")
    with pytest.raises(HdfsError) as info:
        client.write("/once.txt", data=b"replacement")
    assert info.value.exception == "FileAlreadyExistsException"
    assert server.local_path("/once.txt").read_bytes() == b"original"

    client.write("/once.txt", data=b"replacement", overwrite=True)
    assert server.local_path("/once.txt").read_bytes() == b"replacement"


def test_errors_are_remote_exceptions_declared_as_json(server, tmp_path):
    status, headers, body = raw_request(server, "GET", "/webhdfs/v1/x?op=NOSUCHOP")
    assert status == 400
    assert body["RemoteException"]["javaClassName"] == "java.lang.IllegalArgumentException"
    assert "GetOpParam.Op.NOSUCHOP" in body["RemoteException"]["message"]
    assert headers["Content-Type"] == "application/json"  # as a NameNode says it

    status, _, body = raw_request(server, "PUT", "/webhdfs/v1/x?op=GETFILESTATUS")
    assert (status, body["RemoteException"]["exception"]) == (400, "IllegalArgumentException")
    status, _, body = raw_request(server, "GET", "/webhdfs/v1/missing?op=GETFILESTATUS")
    assert (status, body["RemoteException"]["javaClassName"]) == (404, "java.io.FileNotFoundException")


def test_paths_never_leave_the_root(server, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (server.local_path("/") / "link").symlink_to(outside)

    for path in ["/webhdfs/v1/%2E%2E/outside/secret.txt?op=OPEN",
                 "/webhdfs/v1/a/../../outside/secret.txt?op=OPEN",
                 "/webhdfs/v1/link/secret.txt?op=OPEN"]:
        status, _, body = raw_request(server, "GET", path)
        assert (status, body["RemoteException"]["exception"]) == (400, "IllegalArgumentException"), path
    with pytest.raises(WebHdfsError):
        server.local_path("/../outside")
    assert server.local_path("/a/b.txt") == server.local_path("/").joinpath("a", "b.txt")


def test_runs_as_a_separate_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.webhdfs", "--root", str(tmp_path),
                             "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        InsecureClient(url, user="sparkrunner").write("/hello.txt", data=b"hi")
        assert (tmp_path / "hello.txt").read_bytes() == b"hi"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_json_answers_are_declared_as_json_unless_told_otherwise(server, lenient_server):
    status, headers, body = raw_request(server, "GET", "/webhdfs/v1/?op=GETFILESTATUS")
    assert (status, headers["Content-Type"], body["FileStatus"]["type"]) == (200, "application/json", "DIRECTORY")
    status, headers, body = raw_request(lenient_server, "GET", "/webhdfs/v1/?op=GETFILESTATUS")
    assert (status, body["FileStatus"]["type"]) == (200, "DIRECTORY") and "Content-Type" not in headers


# --- Spark's own Hadoop client (webhdfs://) ------------------------------------------------------

def sorted_rows(df):
    return sorted(tuple(row) for row in df.collect())


@pytest.mark.e2e
def test_spark_cannot_read_webhdfs_from_a_server_that_answers_as_a_namenode(server, client, spark):
    """Why the README says hdfs:// for data: Spark 4.3's webhdfs:// client fails on real NameNodes."""
    client.write("/data/in.csv", data=CSV_TEXT.encode("utf-8"))

    with pytest.raises(Exception, match="Response decoding failure") as failure:
        spark.read.schema(SCHEMA).option("header", True).csv(f"{server.webhdfs_url}/data/in.csv").collect()
    assert "RuntimeDelegateImpl" in str(failure.value)  # the JAX-RS part its shaded client lacks


@pytest.mark.e2e
def test_spark_reads_a_csv_uploaded_with_the_hdfs_package(lenient_server, spark):
    server = lenient_server
    InsecureClient(server.url, user="sparkrunner").write("/data/in.csv", data=CSV_TEXT.encode("utf-8"))

    df = spark.read.schema(SCHEMA).option("header", True).csv(f"{server.webhdfs_url}/data/in.csv")
    assert sorted_rows(df) == ROWS
    assert {("GET", "GETFILEBLOCKLOCATIONS"), ("GET", "OPEN")} <= set(server.requests)


@pytest.mark.e2e
def test_spark_writes_parquet_through_the_file_output_committer(lenient_server, spark):
    server = lenient_server
    url = f"{server.webhdfs_url}/out/p"
    spark.createDataFrame(ROWS, SCHEMA).write.mode("overwrite").parquet(url)

    out = server.local_path("/out/p")
    assert (out / "_SUCCESS").is_file()
    assert not (out / "_temporary").exists()
    parts = sorted(out.glob("part-*.parquet"))
    assert parts and ("PUT", "RENAME") in server.requests
    on_disk = [row for part in parts for row in pq.read_table(part).to_pylist()]
    assert sorted(tuple(row.values()) for row in on_disk) == ROWS
    assert sorted_rows(spark.read.parquet(url)) == ROWS

    # Overwrite replaces the whole directory.
    spark.createDataFrame([(9, "new", 9.5)], SCHEMA).write.mode("overwrite").parquet(url)
    assert sorted_rows(spark.read.parquet(url)) == [(9, "new", 9.5)]
    assert (out / "_SUCCESS").is_file() and not (out / "_temporary").exists()
    assert not any(part.exists() for part in parts)


@pytest.mark.e2e
def test_spark_writes_csv_through_the_file_output_committer(lenient_server, spark):
    server, client = lenient_server, InsecureClient(lenient_server.url, user="sparkrunner")
    url = f"{server.webhdfs_url}/out/c"
    spark.createDataFrame(ROWS, SCHEMA).coalesce(1).write.mode("overwrite").option("header", True).csv(url)

    out = server.local_path("/out/c")
    assert (out / "_SUCCESS").is_file()
    assert not (out / "_temporary").exists()
    [part] = out.glob("part-*.csv")
    with part.open(encoding="utf-8", newline="") as f:
        assert list(csv.reader(f)) == [["id", "name", "score"], ["1", "alice", "0.5"],
                                       ["2", "Smith, J.", "1.25"], ["3", "zoë", "-2.0"]]
    assert sorted(client.list("/out/c")) == sorted(["_SUCCESS", part.name])
    df = spark.read.schema(SCHEMA).option("header", True).csv(url)
    assert sorted_rows(df) == ROWS
