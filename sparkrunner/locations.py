"""Where a job's data may live: the service's allowlist of fileUrl schemes and local roots.

A job's EXTERNAL_FILE assets name files the service itself touches (HDFS checks, staging) and that
Spark reads and writes as the service's user. The service therefore accepts only the URL schemes
the operator lists, local paths only under the configured roots (never inside the service's data
directory, which holds every job), and never a link-local host such as a cloud metadata address.
Pure: nothing is opened or resolved over the network.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterator, Mapping

from .config import PolicySettings
from .errors import FieldError

#: Where EXTERNAL_FILE assets sit in a job document.
ASSET_LISTS = (("inputData", "$.inputData"), ("outputData", "$.outputData"))
MODEL_ASSETS = "$.model.storedModel.modelAssets"
#: Cloud metadata services: never a data source, whatever the scheme.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


def external_files(document: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(JSON path of the fileUrl, fileUrl) of every EXTERNAL_FILE asset in a valid document."""
    lists = [(path, document.get(key) or []) for key, path in ASSET_LISTS]
    lists.append((MODEL_ASSETS, document["model"]["storedModel"]["modelAssets"]))
    for path, assets in lists:
        for i, asset in enumerate(assets):
            if asset.get("assetType") == "EXTERNAL_FILE":
                yield f"{path}[{i}].fileUrl", asset["fileUrl"]


def location_problems(document: Mapping[str, Any], policy: PolicySettings,
                      data_dir: Path | None = None, local: bool = True) -> list[FieldError]:
    """Every fileUrl in ``document`` that ``policy`` does not accept, with why.

    ``local=False`` (``sparkrunner run``, which runs as its own user) skips the local-roots rule.
    """
    errors = []
    for path, url in external_files(document):
        problem = url_problem(url, policy, data_dir, local)
        if problem:
            errors.append(FieldError(path, f"{url!r} {problem}"))
    return errors


def url_problem(url: str, policy: PolicySettings, data_dir: Path | None, local: bool) -> str | None:
    if "\0" in url or any(ord(c) < 32 for c in url):
        return "holds a NUL or another control character"
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if len(scheme) == 1:  # C:\data is a Windows drive, not a scheme
        scheme = ""
    allowed = ", ".join(policy.file_url_schemes) or "none"
    if (scheme or "file") not in policy.file_url_schemes:
        return f"uses the scheme {scheme + ':'!r}, which the service does not accept (accepted: {allowed})"
    if scheme in ("", "file"):
        if scheme == "file" and parsed.netloc not in ("", "localhost"):
            return f"names the host {parsed.netloc!r}; a file: URL may only name this machine"
        return _local_problem(url if not scheme else parsed.path, policy, data_dir) if local else None
    return _host_problem(parsed.hostname)


def _local_problem(path: str, policy: PolicySettings, data_dir: Path | None) -> str | None:
    roots = ", ".join(policy.local_roots) or "none are configured"
    if not policy.local_roots:
        return f"is a local path, and the service accepts local paths only under policy.local_roots ({roots})"
    # Spark decodes %-escapes in paths (%2e%2e is ..): both readings must stay inside a root.
    for reading in {path, urllib.parse.unquote(path)}:
        if not os.path.isabs(reading):
            return "is a relative path; local paths must be absolute"
        resolved = Path(os.path.realpath(reading))  # resolves .., and links that exist
        if data_dir is not None and resolved.is_relative_to(Path(os.path.realpath(data_dir))):
            return "lies inside the service's data directory, which holds other jobs"
        if not any(resolved.is_relative_to(os.path.realpath(root)) for root in policy.local_roots):
            return f"resolves to {str(resolved)!r}, which is outside policy.local_roots ({roots})"
    return None


def _host_problem(host: str | None) -> str | None:
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the cluster resolves it
    if address in METADATA_ADDRESSES or address.is_link_local or address.is_multicast or address.is_unspecified:
        return f"names the address {host}, a metadata, link-local, multicast or unspecified address (never a data source)"
    return None
