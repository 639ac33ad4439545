"""A WebHDFS server for tests: namenode and datanode in one, files kept in a local directory.

It answers as a real NameNode does, JSON with ``Content-Type: application/json`` included, and
the ``hdfs`` package (HdfsCLI), which sparkrunner uses for its checks and staging, works against
it. Spark 4.3's own client (``webhdfs://`` URLs) does not: its shaded Hadoop client fails to
decode JSON that declares its type ("Response decoding failure"), against this server as against
a real NameNode. ``json_content_type=False`` leaves the header out, the one way Spark's client
reads and writes here; only tests that need Spark's executors on a remote Hadoop file system use
it, as the nearest stand-in for ``hdfs://`` (which needs a real namenode).
/work/shared/notes/webhdfs.md says what each client needs. Run it on its own with
``python -m tests.support.webhdfs --root DIR --port N``.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import stat
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

_log = logging.getLogger(__name__)

PREFIX = "/webhdfs/v1"
BLOCK_SIZE = 128 * 1024 * 1024
BYTES_PER_CRC = 512
# A real namenode adds this parameter to the datanode URLs it redirects to; we use it the same way,
# to tell the second step of OPEN/CREATE/APPEND/GETFILECHECKSUM from the first.
DATANODE_STEP = "namenoderpcaddress"
STATIC_USER = "dr.who"  # Hadoop's user for requests without user.name (hadoop.http.staticuser.user)
PERMISSION = re.compile(r"[01]?[0-7]{1,3}")
# Op parameter class per HTTP method, for the message a real namenode gives for an unknown op.
OP_CLASS = {"GET": "GetOpParam", "PUT": "PutOpParam", "POST": "PostOpParam", "DELETE": "DeleteOpParam"}


class WebHdfsError(Exception):
    """An error answered as a RemoteException, the way a namenode reports a Java exception."""

    def __init__(self, status: int, java_class: str, message: str):
        super().__init__(message)
        self.status, self.java_class, self.message = status, java_class, message

    def body(self) -> dict:
        return {"RemoteException": {"exception": self.java_class.rsplit(".", 1)[-1],
                                    "javaClassName": self.java_class, "message": self.message}}


def _illegal(message: str) -> WebHdfsError:
    return WebHdfsError(400, "java.lang.IllegalArgumentException", message)


def _not_found(hdfs_path: str, message: str = "File {} does not exist.") -> WebHdfsError:
    # HdfsCLI's upload() looks for "does not exist" in this message, so keep the namenode's wording.
    return WebHdfsError(404, "java.io.FileNotFoundException", message.format(hdfs_path))


def _exists(hdfs_path: str, message: str = "{} already exists") -> WebHdfsError:
    return WebHdfsError(403, "org.apache.hadoop.fs.FileAlreadyExistsException", message.format(hdfs_path))


class WebHdfsServer:
    """A WebHDFS endpoint on 127.0.0.1 serving the files under ``root``."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, *,
                 json_content_type: bool = True):
        self.root = Path(root).resolve()
        #: Whether JSON answers say "Content-Type: application/json", as a NameNode's do.
        self.json_content_type = json_content_type
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()  # namespace changes (create, rename, delete, ...) are atomic
        self.default_owner = getpass.getuser()
        self._meta: dict[str, dict[str, str]] = {}  # hdfs path -> {"permission", "owner"}
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.webhdfs = self
        self._thread: threading.Thread | None = None
        self.host, self.port = self._httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self.webhdfs_url = f"webhdfs://{self.host}:{self.port}"

    def start(self) -> "WebHdfsServer":
        # A short poll interval keeps stop() quick; tests start and stop many servers.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="webhdfs", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "WebHdfsServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- namespace -------------------------------------------------------------------------------

    @staticmethod
    def normalize(hdfs_path: str) -> str:
        """The absolute, slash-normalized form of ``hdfs_path``; dot components are refused."""
        parts = [part for part in hdfs_path.split("/") if part]
        if any(part in (".", "..") or ":" in part for part in parts):
            raise _illegal(f"Invalid path name {hdfs_path}")
        return "/" + "/".join(parts)

    def local_path(self, hdfs_path: str) -> Path:
        """Where the file or directory ``hdfs_path`` is stored on disk (always inside the root)."""
        local = (self.root / self.normalize(hdfs_path).lstrip("/")).resolve()
        if local != self.root and self.root not in local.parents:  # e.g. a symlink leading out
            raise _illegal(f"Invalid path name {hdfs_path}: outside the served root")
        return local

    def status(self, hdfs_path: str, suffix: str = "") -> dict:
        """The FileStatus of ``hdfs_path``; Spark reads every field without null checks."""
        local = self.local_path(hdfs_path)
        try:
            st = local.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise _not_found(hdfs_path) from None
        is_dir = stat.S_ISDIR(st.st_mode)
        meta = self._meta.get(self.normalize(hdfs_path), {})
        return {
            "accessTime": 0 if is_dir else int(st.st_atime * 1000),
            "blockSize": 0 if is_dir else BLOCK_SIZE,
            "childrenNum": len(os.listdir(local)) if is_dir else 0,
            "fileId": st.st_ino,
            "group": "supergroup",
            "length": 0 if is_dir else st.st_size,
            "modificationTime": int(st.st_mtime * 1000),
            "owner": meta.get("owner", self.default_owner),
            "pathSuffix": suffix,
            "permission": meta.get("permission", "755" if is_dir else "644"),
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    def check_parent(self, hdfs_path: str) -> None:
        """Refuses a path below an existing file; missing parents are fine (they get created)."""
        parent = posixpath.dirname(hdfs_path)
        while parent != "/":
            if self.local_path(parent).is_file():
                raise WebHdfsError(403, "org.apache.hadoop.fs.ParentNotDirectoryException",
                                   f"{parent} (is not a directory)")
            parent = posixpath.dirname(parent)

    def mkdirs(self, hdfs_path: str, permission: str | None, owner: str) -> None:
        self.check_parent(hdfs_path)
        path = ""
        for part in [part for part in hdfs_path.split("/") if part]:
            path += "/" + part
            local = self.local_path(path)
            if local.is_file():
                raise _exists(path, "Path is not a directory: {}")
            if not local.exists():
                local.mkdir()
                self._meta[path] = {"permission": permission or "755", "owner": owner}

    def rename(self, src: str, dst: str) -> bool:
        """HDFS rename: into ``dst`` if it is a directory; False when it cannot be done."""
        if src == "/" or not self.local_path(src).exists():
            return False
        if self.local_path(dst).is_dir():
            dst = self.normalize(f"{dst}/{posixpath.basename(src)}")
        if dst == src:
            return True
        parent = self.local_path(posixpath.dirname(dst))
        if dst.startswith(src + "/") or self.local_path(dst).exists() or not parent.is_dir():
            return False
        os.rename(self.local_path(src), self.local_path(dst))
        for key in [k for k in self._meta if k == src or k.startswith(src + "/")]:
            self._meta[dst + key[len(src):]] = self._meta.pop(key)
        return True

    def delete(self, hdfs_path: str, recursive: bool) -> bool:
        local = self.local_path(hdfs_path)
        if hdfs_path == "/" or not local.exists():
            return False
        if local.is_dir():
            if any(local.iterdir()) and not recursive:
                raise WebHdfsError(403, "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
                                   f"`{hdfs_path} is non empty': Directory is not empty")
            shutil.rmtree(local)
        else:
            local.unlink()
        for key in [k for k in self._meta if k == hdfs_path or k.startswith(hdfs_path + "/")]:
            del self._meta[key]
        return True

    def set_permission(self, hdfs_path: str, permission: str) -> None:
        self.status(hdfs_path)  # FileNotFoundException if missing
        self._meta.setdefault(hdfs_path, {})["permission"] = permission

    def set_created(self, hdfs_path: str, permission: str | None, owner: str) -> None:
        self._meta[hdfs_path] = {"permission": permission or "644", "owner": owner}


def content_summary(local: Path) -> dict:
    """Counts as HDFS does: the directory itself is one of the directories."""
    if local.is_file():
        dirs, files, length = 0, 1, local.stat().st_size
    else:
        dirs = files = length = 0
        for dirpath, _, filenames in os.walk(local):
            dirs += 1
            files += len(filenames)
            length += sum(os.path.getsize(os.path.join(dirpath, name)) for name in filenames)
    return {"directoryCount": dirs, "ecPolicy": "", "fileCount": files, "length": length,
            "quota": -1, "spaceConsumed": length, "spaceQuota": -1, "typeQuota": {}}


def file_checksum(local: Path) -> dict:
    """HDFS's MD5-of-MD5-of-CRC32 checksum: CRC32 per 512 bytes, MD5 per block, MD5 of those."""
    def block_md5(block: bytes) -> bytes:
        return hashlib.md5(b"".join(struct.pack(">I", zlib.crc32(block[i:i + BYTES_PER_CRC]))
                                    for i in range(0, len(block), BYTES_PER_CRC))).digest()

    with local.open("rb") as f:
        block_md5s = [block_md5(block) for block in iter(lambda: f.read(BLOCK_SIZE), b"")]
    block_md5s = block_md5s or [block_md5(b"")]
    # A real namenode reports crcPerBlock 0 for a file of one block.
    crc_per_block = BLOCK_SIZE // BYTES_PER_CRC if len(block_md5s) > 1 else 0
    data = struct.pack(">iq", BYTES_PER_CRC, crc_per_block) + hashlib.md5(b"".join(block_md5s)).digest()
    return {"algorithm": f"MD5-of-{crc_per_block}MD5-of-{BYTES_PER_CRC}CRC32",
            "bytes": data.hex(), "length": len(data)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; the Java client uploads with chunked encoding

    def do_GET(self):
        self._dispatch()

    do_PUT = do_POST = do_DELETE = do_GET

    def log_message(self, format, *args):
        _log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self) -> None:
        fs: WebHdfsServer = self.server.webhdfs
        url = urlsplit(self.path)
        # Parameter names, op values and booleans are case-insensitive in WebHDFS (HdfsCLI sends True).
        self.params = {k.lower(): v for k, v in parse_qsl(url.query, keep_blank_values=True)}
        self.op = self.params.get("op", "").upper()
        self._body = self._body_pieces()
        fs.requests.append((self.command, self.op))
        try:
            if url.path != PREFIX and not url.path.startswith(PREFIX + "/"):
                raise _illegal(f"{url.path} is not a WebHDFS path; they start with {PREFIX}")
            hdfs_path = fs.normalize(unquote(url.path[len(PREFIX):]))
            handler = getattr(self, f"_{self.command}_{self.op}", None)
            if handler is None:
                raise _illegal(f'Invalid value for webhdfs parameter "op": No enum constant '
                               f"org.apache.hadoop.hdfs.web.resources.{OP_CLASS[self.command]}.Op.{self.op}")
            handler(fs, hdfs_path)
        except WebHdfsError as err:
            self._json(err.status, err.body())
        except Exception as exc:  # a bug here, or the client went away: answer as a namenode would
            _log.exception("WebHDFS %s %s failed", self.command, self.path)
            self.close_connection = True
            try:
                self._json(500, WebHdfsError(500, "java.lang.RuntimeException", repr(exc)).body())
            except OSError:
                pass

    # --- transport -------------------------------------------------------------------------------

    def _body_pieces(self):
        """Yields the request body as it arrives, decoding chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while size := int(self.rfile.readline(1024).split(b";")[0].strip(), 16):
                yield self.rfile.read(size)
                self.rfile.readline(1024)  # the CRLF closing the chunk
            while self.rfile.readline(1024).strip():  # trailers, up to the empty line
                pass
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0 and (piece := self.rfile.read(min(left, 1 << 16))):
                left -= len(piece)
                yield piece

    def _start(self, status: int, length: int, headers: dict | None = None) -> None:
        """Sends the status line and headers of a response whose body is ``length`` bytes."""
        # Read whatever body is left first, or the next request on this connection would start in it.
        for _ in self._body:
            pass
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self._start(status, len(body), headers)
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        # A NameNode declares its JSON. Spark 4.3's shaded client then tries to load a JAX-RS
        # RuntimeDelegate it lacks and fails with "Response decoding failure"; without the header
        # it parses the body without looking.
        fs: WebHdfsServer = self.server.webhdfs
        headers = {"Content-Type": "application/json"} if fs.json_content_type else None
        self._send(status, json.dumps(obj).encode(), headers)

    def _redirected(self, hdfs_path: str) -> bool:
        """On the namenode step, sends the 307 to the datanode step and returns True."""
        if DATANODE_STEP in self.params:
            return False
        # The Java client sends "localhost" for 127.0.0.1; the redirect must name what it used.
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        query = urlencode({**self.params, DATANODE_STEP: host})
        self._send(307, headers={"Location": f"http://{host}{PREFIX}{quote(hdfs_path)}?{query}"})
        return True

    def _flag(self, name: str, default: bool = False) -> bool:
        value = self.params.get(name, str(default)).lower()
        if value not in ("true", "false"):
            raise _illegal(f'Invalid value for webhdfs parameter "{name}": {value!r} is not a boolean')
        return value == "true"

    def _number(self, name: str, default: int) -> int:
        try:
            value = int(self.params.get(name) or default)
        except ValueError:
            raise _illegal(f'Invalid value for webhdfs parameter "{name}": {self.params[name]!r}') from None
        if value < 0:
            raise _illegal(f'Invalid value for webhdfs parameter "{name}": {value} < 0')
        return value

    def _permission(self) -> str | None:
        value = self.params.get("permission")
        if value is None:
            return None
        if not PERMISSION.fullmatch(value):
            raise _illegal(f'Invalid value for webhdfs parameter "permission": {value!r}')
        return format(int(value, 8), "o")

    @property
    def _user(self) -> str:
        return self.params.get("user.name") or STATIC_USER

    def _file(self, fs: WebHdfsServer, hdfs_path: str) -> Path:
        """The local file behind ``hdfs_path``: FileNotFoundException if missing or a directory."""
        local = fs.local_path(hdfs_path)
        if local.is_dir():
            raise _not_found(hdfs_path, "Path is not a file: {}")
        if not local.is_file():
            raise _not_found(hdfs_path)
        return local

    # --- operations (checks run on both steps of a redirected one) -------------------------------

    def _GET_GETFILESTATUS(self, fs, hdfs_path):
        self._json(200, {"FileStatus": fs.status(hdfs_path)})

    def _GET_LISTSTATUS(self, fs, hdfs_path):
        with fs.lock:
            local = fs.local_path(hdfs_path)
            if local.is_dir():  # HDFS lists in byte order of the names
                names = sorted(os.listdir(local), key=lambda name: name.encode())
                statuses = [fs.status(f"{hdfs_path.rstrip('/')}/{name}", name) for name in names]
            else:  # a file lists as itself, with an empty pathSuffix
                statuses = [fs.status(hdfs_path)]
        self._json(200, {"FileStatuses": {"FileStatus": statuses}})

    def _GET_GETCONTENTSUMMARY(self, fs, hdfs_path):
        with fs.lock:
            fs.status(hdfs_path)
            self._json(200, {"ContentSummary": content_summary(fs.local_path(hdfs_path))})

    def _GET_GETFILECHECKSUM(self, fs, hdfs_path):
        local = self._file(fs, hdfs_path)
        if not self._redirected(hdfs_path):
            self._json(200, {"FileChecksum": file_checksum(local)})

    def _GET_GETFILEBLOCKLOCATIONS(self, fs, hdfs_path):
        size = self._file(fs, hdfs_path).stat().st_size
        start, length = self._number("offset", 0), self._number("length", 2**63 - 1)
        host = (self.headers.get("Host") or self.server.server_address[0]).rsplit(":", 1)[0]
        name = "{}:{}".format(*self.server.server_address[:2])
        blocks = [{"offset": offset, "length": min(BLOCK_SIZE, size - offset), "corrupt": False,
                   "hosts": [host], "names": [name], "topologyPaths": [f"/default-rack/{name}"],
                   "cachedHosts": [], "storageIds": ["DS-webhdfs-test"], "storageTypes": ["DISK"]}
                  for offset in range(0, size, BLOCK_SIZE)
                  if offset < start + length and offset + BLOCK_SIZE > start]
        self._json(200, {"BlockLocations": {"BlockLocation": blocks}})

    def _GET_GETHOMEDIRECTORY(self, fs, hdfs_path):
        self._json(200, {"Path": f"/user/{self._user}"})

    def _GET_GETTRASHROOT(self, fs, hdfs_path):
        self._json(200, {"Path": f"/user/{self._user}/.Trash"})

    def _GET_OPEN(self, fs, hdfs_path):
        local = self._file(fs, hdfs_path)
        offset, length = self._number("offset", 0), self._number("length", 2**63 - 1)
        if self._redirected(hdfs_path):
            return
        # The Java client rewrites offset in this URL itself when it seeks, so honour it here.
        with local.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset > size:
                raise WebHdfsError(403, "java.io.IOException", f"Offset={offset} out of the range [0, {size}]")
            count = min(length, size - offset)
            f.seek(offset)
            self._start(200, count, {"Content-Type": "application/octet-stream"})  # fine for Spark
            while count > 0 and (piece := f.read(min(count, 1 << 16))):
                self.wfile.write(piece)
                count -= len(piece)

    def _PUT_CREATE(self, fs, hdfs_path):
        overwrite, permission = self._flag("overwrite"), self._permission()
        with fs.lock:
            local = fs.local_path(hdfs_path)
            if local.is_dir():
                raise _exists(hdfs_path, "{} already exists as a directory")
            if local.exists() and not overwrite:
                raise _exists(hdfs_path, f"{{}} for client {self.client_address[0]} already exists")
            fs.check_parent(hdfs_path)
            parent = posixpath.dirname(hdfs_path)
            if not self._flag("createparent", True) and not fs.local_path(parent).is_dir():
                raise _not_found(parent, "Parent directory doesn't exist: {}")
            out = None
            if DATANODE_STEP in self.params:
                fs.mkdirs(parent, None, self._user)  # create makes missing parents
                out = local.open("wb")
                fs.set_created(hdfs_path, permission, self._user)
        if out is None:
            self._redirected(hdfs_path)
            return
        with out:
            for piece in self._body:
                out.write(piece)
        self._send(201)  # the Java client accepts nothing else here

    def _POST_APPEND(self, fs, hdfs_path):
        local = self._file(fs, hdfs_path)
        if self._redirected(hdfs_path):
            return
        with local.open("ab") as out:
            for piece in self._body:
                out.write(piece)
        self._send(200)

    def _PUT_MKDIRS(self, fs, hdfs_path):
        with fs.lock:
            fs.mkdirs(hdfs_path, self._permission(), self._user)
        self._json(200, {"boolean": True})

    def _PUT_RENAME(self, fs, hdfs_path):
        destination = self.params.get("destination", "")
        if not destination.startswith("/"):
            raise _illegal(f'Invalid value for webhdfs parameter "destination": {destination!r} is not absolute')
        with fs.lock:
            renamed = fs.rename(hdfs_path, fs.normalize(destination))
        self._json(200, {"boolean": renamed})

    def _PUT_SETPERMISSION(self, fs, hdfs_path):
        with fs.lock:
            fs.set_permission(hdfs_path, self._permission() or "755")
        self._send(200)

    def _DELETE_DELETE(self, fs, hdfs_path):
        with fs.lock:
            deleted = fs.delete(hdfs_path, self._flag("recursive"))
        self._json(200, {"boolean": deleted})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a directory over WebHDFS (for tests and demos).")
    parser.add_argument("--root", type=Path, required=True, help="directory holding the files")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    server = WebHdfsServer(args.root, args.host, args.port)
    print(server.url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
