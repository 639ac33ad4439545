"""Settings: a dataclass with documented defaults, loaded from YAML.

The file is chosen by ``--config``, else ``SPARKRUNNER_CONFIG``, else ``conf/sparkrunner.yaml`` in
the current directory if there is one; with none, the defaults run jobs on ``local[*]``.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_ENV = "SPARKRUNNER_CONFIG"
DEFAULT_CONFIG_FILE = Path("conf/sparkrunner.yaml")


@dataclass(frozen=True)
class SparkSettings:
    #: spark-submit's --master. Jobs may not choose it unless ``policy.allow`` says so.
    master: str = "local[*]"
    #: spark-submit's --deploy-mode: "client" keeps the driver here, which the driver log needs.
    deploy_mode: str = "client"
    #: Directory holding bin/spark-submit; empty means the one inside the pyspark wheel.
    home: str = ""
    #: Python for the driver and the executors (PYSPARK_PYTHON); empty means this interpreter.
    python: str = ""
    #: SPARK_CONF_DIR for spark-submit: its spark-defaults.conf carries what must stay off the
    #: command line, such as spark.authenticate.secret. Relative to the configuration file.
    conf_dir: str = ""
    #: Spark properties every job gets; a job may override those the policy lets it choose.
    conf: dict[str, str] = field(default_factory=dict)
    #: Extra environment for spark-submit (e.g. HADOOP_CONF_DIR). The default keeps the driver
    #: and its web UI on the loopback interface; a cluster profile replaces it.
    env: dict[str, str] = field(default_factory=lambda: {"SPARK_LOCAL_IP": "127.0.0.1"})


@dataclass(frozen=True)
class PolicySettings:
    #: Glob patterns of Spark properties a job may set although the policy refuses them by
    #: default, e.g. ["spark.driver.extraJavaOptions"].
    allow: tuple[str, ...] = ()
    #: URL schemes a job's fileUrl may use; empty: any scheme that is not denied. A plain path
    #: counts as "file".
    file_url_schemes: tuple[str, ...] = ()
    #: URL schemes refused besides those always refused (local, har, jar, data, javascript).
    denied_url_schemes: tuple[str, ...] = ()
    #: Directories under which the service accepts local fileUrls (plain paths and file://).
    #: Empty: the service accepts none, as Livy's local-dir whitelist. ``sparkrunner run`` runs
    #: as its user, on that user's files, and is not limited by this list.
    local_roots: tuple[str, ...] = ()
    #: Paths a sandboxed job never sees, and no job may name, although they lie under a local
    #: root or a system directory: a secret's directory, a key. The data directory, the
    #: configuration file, spark.conf_dir's spark-defaults.conf, the TLS files and the service
    #: user's home are hidden anyway. Relative to the configuration file.
    hidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitSettings:
    """Bounds on one job document, checked before anything is stored or run."""

    #: Deepest nesting of objects and arrays in a job document.
    max_json_depth: int = 64
    #: Most assets in one job: modelAssets, inputData and outputData together.
    max_assets: int = 1000
    #: Largest sourceCode or content of one asset, in bytes (UTF-8).
    max_asset_bytes: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class HdfsSettings:
    #: WebHDFS address of the namenode for hdfs:// URLs, e.g. http://namenode:9870. Empty: only
    #: webhdfs://host:port URLs, which carry their own address, can be checked.
    namenode: str = ""
    #: The user for WebHDFS requests (user.name); empty: the hdfs package's default.
    user: str = ""
    #: hdfs:// or webhdfs:// directory to upload each job's working directory under; empty: none.
    staging_root: str = ""
    #: An output on HDFS that already exists: "fail" (the default) ends the job at once, naming
    #: the output; "overwrite" deletes it before the run, as Spark's mode("overwrite") would.
    existing_outputs: str = "fail"
    timeout_seconds: int = 30


@dataclass(frozen=True)
class ServiceSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    max_concurrent_jobs: int = 2
    #: Jobs without their own timeoutSeconds end as ERROR after this many seconds; 0 means never.
    default_timeout_seconds: int = 0
    #: API users and their tokens, {user: token}; a token may be written as "sha256:<hex>" so
    #: that the file does not hold it. Empty: no authentication, and loopback addresses only.
    tokens: dict[str, str] = field(default_factory=dict)
    #: Largest request body, in bytes; larger ones get 413, with or without a Content-Length.
    max_request_bytes: int = 16 * 1024 * 1024
    #: A path before Livy's routes, e.g. "/livy" for /livy/batches; "" (the default): /batches,
    #: where Livy has them.
    livy_prefix: str = ""
    #: PEM certificate (chain) and private key for HTTPS; both empty: plain HTTP. Relative to
    #: the configuration file. Sandboxed jobs never see them.
    ssl_certfile: str = ""
    ssl_keyfile: str = ""


@dataclass(frozen=True)
class WarmSettings:
    """Warm jobs: eligible jobs run on a warm Spark Connect server instead of a spark-submit each."""

    #: Whether the service runs eligible jobs warm; off, every job runs cold.
    enabled: bool = True
    #: Warm servers at most: one per user (token), the least recently used idle one making way.
    #: A job that finds none free runs cold, and its log says so.
    max_servers: int = 2
    #: Warm jobs running at once, besides the cold ones of ``service.max_concurrent_jobs``.
    max_concurrent_jobs: int = 4
    #: A server is replaced after this many jobs, or when its processes use more memory than
    #: ``max_server_memory_mb`` (long-lived Connect servers keep some state of every session).
    max_jobs_per_server: int = 200
    max_server_memory_mb: int = 3072
    #: The server's spark.driver.memory (it runs the jobs' Spark work on local[*]).
    driver_memory: str = "1g"
    #: Start the server when the service starts (without tokens: the one user's), so that the
    #: first job finds it warm; otherwise the first warm job of a user starts it.
    prestart: bool = True
    #: How long a server may take to start before its jobs run cold instead.
    start_timeout_seconds: int = 180


@dataclass(frozen=True)
class EnvironmentSettings:
    """Each model's own packages: the environments built for them (:mod:`sparkrunner.environments`)."""

    #: Where environments are built and kept. Empty: ``environments`` in the data directory for
    #: the service, the user's cache directory (~/.cache/sparkrunner) for ``sparkrunner run``.
    cache_dir: str = ""
    #: The cache's bound: least recently used environments not in use are removed past it.
    max_cache_mb: int = 5120
    #: How long building one environment may take before its job ends ERROR.
    build_timeout_seconds: int = 600
    #: Wheels only: building a source distribution runs its code. Off lets uv build sdists.
    only_binary: bool = True
    #: Base packages an environment reuses at the base's version unless the model names them.
    reuse: tuple[str, ...] = ("pyspark", "py4j", "pandas", "pyarrow", "numpy")
    #: Where packages come from. All empty: the indexes of pip's own configuration here
    #: (``pip config list``: index-url, extra-index-url, find-links, cert).
    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    #: Resolve a new requirement set when a job is submitted (``uv pip compile``, up to 60 s), so
    #: an unknown package or one without a wheel here is refused at once, naming it.
    check_on_submit: bool = True


@dataclass(frozen=True)
class BulkSettings:
    """Bulk scoring, ``POST /models/{name}/score``: one JSON record a line in, one answer a line out."""

    #: Largest request body, in bytes (``service.max_request_bytes`` bounds every request too);
    #: larger ones get 413. The body travels in the job's document, under ``limits.max_asset_bytes``.
    max_request_bytes: int = 4 * 1024 * 1024
    #: Most records (lines) in one request; more get 400.
    max_lines: int = 100_000


class SandboxMode(str, Enum):
    """Whether jobs run in a sandbox (bubblewrap): the ``sandbox`` setting."""

    #: The service sandboxes every job where bwrap works; where it does not, it warns loudly,
    #: or refuses to start when tokens say several users share it. ``sparkrunner run`` does not.
    AUTO = "auto"
    #: Every job, ``sparkrunner run`` too; nothing starts where bwrap does not work.
    ON = "on"
    #: No job: the operator's explicit choice (one user, or one service per trust domain).
    OFF = "off"


#: Marks a field that is not a configuration key: set by :func:`load`, never read from YAML.
_NOT_A_KEY = {"key": False}


@dataclass(frozen=True)
class Settings:
    #: Where job records and working directories live.
    data_dir: Path = Path("~/.sparkrunner")
    #: auto, on or off: see :class:`SandboxMode`.
    sandbox: SandboxMode = SandboxMode.AUTO
    spark: SparkSettings = field(default_factory=SparkSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    hdfs: HdfsSettings = field(default_factory=HdfsSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    warm: WarmSettings = field(default_factory=WarmSettings)
    environments: EnvironmentSettings = field(default_factory=EnvironmentSettings)
    bulk: BulkSettings = field(default_factory=BulkSettings)
    #: The file these settings came from, if any (a sandboxed job never sees it).
    source: Path | None = field(default=None, compare=False, metadata=_NOT_A_KEY)

    def with_overrides(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def load(path: str | os.PathLike | None = None) -> Settings:
    """The settings from ``path``, ``$SPARKRUNNER_CONFIG`` or ``conf/sparkrunner.yaml``."""
    if path is None:
        path = os.environ.get(CONFIG_ENV) or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None)
    if path is None:
        return _finish(Settings())
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {str(path)!r} is not valid YAML: {exc}") from exc
    settings = from_dict(raw, source=str(path))
    # Relative paths are relative to the file that names them, not to wherever we run.
    here = Path(path).resolve().parent
    if not Path(settings.data_dir).expanduser().is_absolute():
        settings = settings.with_overrides(data_dir=(here / settings.data_dir).resolve())
    def beside(paths):
        return tuple(str((here / Path(p).expanduser()).resolve()) for p in paths)

    settings = settings.with_overrides(
        source=Path(path).resolve(),
        policy=dataclasses.replace(settings.policy, local_roots=beside(settings.policy.local_roots),
                                   hidden=beside(settings.policy.hidden)))
    service = settings.service
    if service.ssl_certfile or service.ssl_keyfile:
        settings = settings.with_overrides(service=dataclasses.replace(
            service, **{name: beside([value])[0] for name, value in
                        (("ssl_certfile", service.ssl_certfile), ("ssl_keyfile", service.ssl_keyfile)) if value}))
    cache_dir = settings.environments.cache_dir
    if cache_dir and not Path(cache_dir).expanduser().is_absolute():
        settings = settings.with_overrides(environments=dataclasses.replace(
            settings.environments, cache_dir=str((here / cache_dir).resolve())))
    conf_dir = settings.spark.conf_dir
    if conf_dir and not Path(conf_dir).expanduser().is_absolute():
        settings = settings.with_overrides(
            spark=dataclasses.replace(settings.spark, conf_dir=str((here / conf_dir).resolve())))
    return _finish(settings)


def _finish(settings: Settings) -> Settings:
    return settings.with_overrides(data_dir=Path(settings.data_dir).expanduser())


EXISTING_OUTPUT_POLICIES = ("overwrite", "fail")


def from_dict(raw: Any, source: str = "configuration") -> Settings:
    """Settings from a parsed YAML mapping; unknown keys and wrong types are errors."""
    settings = _build(Settings, raw, source)
    if settings.service.max_concurrent_jobs < 1:
        raise ConfigError(f"{source}.service.max_concurrent_jobs: must be at least 1, not "
                          f"{settings.service.max_concurrent_jobs}")
    for name in ("max_servers", "max_concurrent_jobs", "max_jobs_per_server", "max_server_memory_mb",
                 "start_timeout_seconds"):
        if getattr(settings.warm, name) < 1:
            raise ConfigError(f"{source}.warm.{name}: must be at least 1, not {getattr(settings.warm, name)}")
    for name in ("max_cache_mb", "build_timeout_seconds"):
        if getattr(settings.environments, name) < 1:
            raise ConfigError(f"{source}.environments.{name}: must be at least 1, not "
                              f"{getattr(settings.environments, name)}")
    for name in ("max_json_depth", "max_assets", "max_asset_bytes"):
        if getattr(settings.limits, name) < 1:
            raise ConfigError(f"{source}.limits.{name}: must be at least 1, not {getattr(settings.limits, name)}")
    for name in ("max_request_bytes", "max_lines"):
        if getattr(settings.bulk, name) < 1:
            raise ConfigError(f"{source}.bulk.{name}: must be at least 1, not {getattr(settings.bulk, name)}")
    if settings.service.max_request_bytes < 1024:
        raise ConfigError(f"{source}.service.max_request_bytes: must be at least 1024, not "
                          f"{settings.service.max_request_bytes}")
    for user, token in settings.service.tokens.items():
        if not user or ":" in user:
            raise ConfigError(f"{source}.service.tokens: user name {user!r} must be non-empty and "
                              "hold no ':' (HTTP basic sends user:token)")
        if token.startswith("sha256:"):
            if not re.fullmatch(r"[0-9a-fA-F]{64}", token.removeprefix("sha256:")):
                raise ConfigError(f"{source}.service.tokens.{user}: 'sha256:' must be followed by "
                                  "the 64 hex digits of the token's SHA-256 digest")
        elif len(token) < 16:
            raise ConfigError(f"{source}.service.tokens.{user}: a token needs at least 16 "
                              "characters (the value is not shown)")
    if bool(settings.service.ssl_certfile) != bool(settings.service.ssl_keyfile):
        raise ConfigError(f"{source}.service: ssl_certfile and ssl_keyfile go together (HTTPS needs "
                          "both the certificate and its private key), or neither for plain HTTP")
    if not re.fullmatch(r"(/?[A-Za-z0-9._~-]+)*/?", settings.service.livy_prefix):
        raise ConfigError(f"{source}.service.livy_prefix: {settings.service.livy_prefix!r} is not a "
                          "URL path: use segments of letters, digits and '._~-', such as /livy, "
                          "or '' for Livy's own paths")
    if settings.hdfs.existing_outputs not in EXISTING_OUTPUT_POLICIES:
        raise ConfigError(f"{source}.hdfs.existing_outputs: {settings.hdfs.existing_outputs!r} is not "
                          f"one of {', '.join(EXISTING_OUTPUT_POLICIES)}")
    return settings


def _build(cls, raw: Any, where: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping, not {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("key", True)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"accepted: {', '.join(fields)}")
    values = {}
    defaults = cls()
    for name, value in raw.items():
        default = getattr(defaults, name)
        key = f"{where}.{name}"
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value or {}, key)
        elif isinstance(default, Enum):
            if isinstance(value, bool):  # YAML reads a bare on/off as a boolean
                value = "on" if value else "off"
            accepted = [member.value for member in type(default)]
            if value not in accepted:
                raise ConfigError(f"{key}: {value!r} is not one of {', '.join(accepted)}")
            values[name] = type(default)(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: must be a mapping of names to values")
            values[name] = {str(k): _scalar_str(v) for k, v in value.items()}
        elif isinstance(default, tuple):
            if not isinstance(value, list):
                raise ConfigError(f"{key}: must be a list")
            values[name] = tuple(str(v) for v in value)
        elif isinstance(default, Path):
            values[name] = Path(str(value))
        elif isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, type(default)):
            raise ConfigError(f"{key}: must be a {type(default).__name__}, not {value!r}")
        else:
            values[name] = value
    return cls(**values)


def _scalar_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
