"""HDFS before spark-submit: inputs that must exist, outputs that may not, and staging.

Spark reads and writes ``hdfs://`` and ``webhdfs://`` URLs itself; this module only looks before
the JVM starts, through WebHDFS with the ``hdfs`` package, so a job whose input is missing fails
at once, naming the asset, instead of minutes later in a stack trace.

``webhdfs://host:port/path`` is checked at that address. ``hdfs://`` (the native protocol) is
checked at the configured namenode's WebHDFS address, since the package speaks only WebHDFS.
"""

from __future__ import annotations

import logging
import posixpath
import urllib.parse
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import HdfsSettings
from .errors import FieldError, HdfsCheckFailed
from .jobspec import JobSpec

log = logging.getLogger(__name__)

SCHEMES = ("hdfs", "webhdfs")


def split_url(url: str, settings: HdfsSettings) -> tuple[str, str] | None:
    """(WebHDFS HTTP address, path) for an HDFS URL; None for any other kind of URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in SCHEMES:
        return None
    if parsed.scheme == "webhdfs" and parsed.netloc:
        address = f"http://{parsed.netloc}"
    elif settings.namenode:
        address = settings.namenode.rstrip("/")
        namenode_host = urllib.parse.urlparse(address).hostname
        if parsed.hostname and parsed.hostname != namenode_host:
            # Never check (or delete) a path on one cluster while the URL names another.
            raise HdfsCheckFailed([FieldError("hdfs.namenode", f"{url!r} names the cluster "
                                  f"{parsed.hostname!r}, but hdfs.namenode is {namenode_host!r}")])
    else:
        raise HdfsCheckFailed([FieldError("hdfs.namenode", f"is not configured, so {url!r} cannot be checked; "
                                                           "set it to the namenode's WebHDFS address")])
    return address, urllib.parse.unquote(parsed.path) or "/"


def unchecked_reason(url: str, settings: HdfsSettings) -> str | None:
    """Why an ``hdfs://`` URL cannot be checked before the run, or None when it can (or is not
    HDFS). Spark still reads it, with the cluster's own Hadoop configuration."""
    if urllib.parse.urlparse(url).scheme == "hdfs" and not settings.namenode:
        return "hdfs.namenode is not configured"
    return None


class Hdfs:
    """WebHDFS clients by namenode address, made once each."""

    def __init__(self, settings: HdfsSettings):
        self.settings = settings
        self._clients: dict[str, Any] = {}

    def client(self, address: str):
        if address not in self._clients:
            from hdfs import InsecureClient

            self._clients[address] = InsecureClient(address, user=self.settings.user or None,
                                                    timeout=self.settings.timeout_seconds)
        return self._clients[address]

    def exists(self, address: str, path: str) -> bool:
        from hdfs.util import HdfsError

        try:
            return self.client(address).status(path, strict=False) is not None
        except (HdfsError, OSError) as exc:
            raise HdfsCheckFailed([FieldError(address, f"cannot reach WebHDFS: {exc}")]) from exc

    def check(self, spec: JobSpec) -> None:
        from hdfs.util import HdfsError

        try:
            self._check(spec)
        except (HdfsError, OSError) as exc:
            raise HdfsCheckFailed([FieldError("hdfs", f"WebHDFS failed: {exc}")]) from exc

    def _check(self, spec: JobSpec) -> None:
        """Raises :class:`HdfsCheckFailed` naming every missing input or attachment, and every
        output that exists when the policy is "fail"; under "overwrite", existing outputs are
        deleted once every check has passed."""
        errors: list[FieldError] = []
        outputs = []
        for where, must_exist in (("inputData", True), ("attachments", True), ("outputData", False)):
            for index, asset in _indexed(spec, where):
                url = asset.get("fileUrl", "")
                if unchecked_reason(url, self.settings):
                    continue  # admission warned about it
                target = split_url(url, self.settings)
                if target is None:
                    continue
                exists = self.exists(*target)
                label = f"{asset.get('name') or asset.get('filename') or 'asset'!r} ({url})"
                if must_exist and not exists:
                    errors.append(FieldError(index, f"{label} does not exist"))
                elif not must_exist and exists:
                    if self.settings.existing_outputs == "fail":
                        errors.append(FieldError(index, f"{label} already exists, and the configured "
                                                        "policy for existing outputs is 'fail'"))
                    else:
                        outputs.append(target)
        if errors:
            raise HdfsCheckFailed(errors)
        for address, path in outputs:  # policy "overwrite": this run's output replaces it
            log.info("Deleting the existing output %r before the run.", path)
            self.client(address).delete(path, recursive=True)

    def stage(self, workdir: Path, job_id: str) -> str | None:
        """Uploads the working directory's files to the staging root; returns the HDFS path."""
        if not self.settings.staging_root:
            return None
        from hdfs.util import HdfsError

        try:
            return self._stage(workdir, job_id)
        except (HdfsError, OSError) as exc:
            raise HdfsCheckFailed([FieldError("hdfs.staging_root", f"staging failed: {exc}")]) from exc

    def _stage(self, workdir: Path, job_id: str) -> str:
        address, root = split_url(self.settings.staging_root, self.settings) or (None, None)
        if address is None:
            raise HdfsCheckFailed([FieldError("hdfs.staging_root", f"{self.settings.staging_root!r} "
                                                                   "is not an hdfs:// or webhdfs:// URL")])
        target = posixpath.join(root, job_id)
        client = self.client(address)
        client.makedirs(target, permission="700")
        for path in sorted(Path(workdir).iterdir()):
            if path.is_file():
                client.upload(posixpath.join(target, path.name), str(path), overwrite=True)
        log.info("Staged the working directory of job %s to %r.", job_id, target)
        return target


def _indexed(spec: JobSpec, where: str) -> Iterable[tuple[str, Mapping]]:
    """Each asset with its JSON path in the job document."""
    if where == "attachments":
        model_assets = spec.document["model"]["storedModel"]["modelAssets"]
        for i, asset in enumerate(model_assets):
            if asset.get("assetType") == "EXTERNAL_FILE":
                yield f"$.model.storedModel.modelAssets[{i}]", asset
        return
    for i, asset in enumerate(spec.document.get(where) or []):
        if asset.get("assetType") == "EXTERNAL_FILE":
            yield f"$.{where}[{i}]", asset


def needs_hdfs(spec: JobSpec) -> bool:
    """True when some asset of the job lives on HDFS."""
    return any(urllib.parse.urlparse(a.get("fileUrl", "")).scheme in SCHEMES
               for a in (*spec.inputs, *spec.outputs, *spec.attachments))
