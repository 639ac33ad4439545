"""Warm or cold: whether an admitted job runs on a warm Spark Connect server, decided once, at admission.

A *cold* job gets a spark-submit, and so a JVM, of its own. A *warm* job runs its driver code in
a short-lived Python process connected to a Spark Connect server that is already running
(:mod:`sparkrunner.warm`): it starts in a fraction of a second instead of several.

Spark Connect serves the DataFrame and SQL API, not the JVM-backed one: no ``sparkContext``,
no RDDs, no broadcasts, accumulators or ``addFile``; and a session can change only SQL settings,
not executor memory, cores or packages, which belong to the server's JVM. So a job runs warm when

- it is a model job (a script job, Livy's batch, always gets its own spark-submit);
- its document does not say ``"executionMode": "cold"``;
- every Spark setting the job itself chose is a SQL setting (``spark.sql.*``), or one a local
  master ignores anyway (executor memory and cores, which ModelOp's engine record always sends);
- it is a one-parameter scoring job (the scoring path is sparkrunner's own and works on both),
  or its sources use none of the APIs above, found with :mod:`ast` as functions are.

The decision and its reason are kept with the job and shown by the API. A job that still hits a
missing API at run time ends ERROR with a reason saying to resubmit it cold: its code is never run
twice behind the user's back. ``"executionMode": "warm"`` refuses a job that cannot run warm.

Pure: the job's sources are parsed, never imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from enum import Enum
from typing import Any, Mapping

from .errors import FieldError
from .jobspec import JobSpec, SourceFile
from .policy import ResolvedSettings, local_path

MODE_FIELD = "executionMode"
#: Names whose use means the JVM-backed API: an attribute (``spark.sparkContext``, ``df.rdd``)
#: or a name imported or called (``SparkContext``, ``from pyspark import SparkConf``).
JVM_API_NAMES = frozenset({
    "sparkContext", "SparkContext", "SparkConf", "rdd", "RDD", "parallelize", "textFile",
    "broadcast", "accumulator", "addFile", "addPyFile", "_jvm", "_jsc", "_jdf", "_jsparkSession",
})
#: Modules built on RDDs.
JVM_API_MODULES = ("pyspark.mllib", "pyspark.streaming")
#: The only settings a warm session can take from a job.
SESSION_SETTING_PREFIX = "spark.sql."
#: Settings a local master ignores (it has no executors: the driver runs every task), so a job
#: naming them loses nothing warm. ModelOp's engine record always sends the executor's memory.
IGNORED_ON_LOCAL = frozenset({"spark.executor.memory", "spark.executor.cores", "spark.executor.instances",
                              "spark.cores.max", "spark.executor.memoryOverhead"})


class Mode(str, Enum):
    WARM = "warm"
    COLD = "cold"


@dataclass(frozen=True)
class Execution:
    """How a job runs, and why (shown as ``executionMode`` and ``executionReason``)."""

    mode: Mode
    reason: str

    @property
    def warm(self) -> bool:
        return self.mode is Mode.WARM


def decide(spec: Any, settings: ResolvedSettings, document: Mapping[str, Any], *,
           warm_unavailable: str | None, master: str = "local[*]",
           requirements: Any = None) -> tuple[Execution, list[FieldError]]:
    """How the job runs, and the problem when the document asks for warm and it cannot be.

    ``warm_unavailable`` is None where warm jobs can run (the service with warm jobs on, or
    ``sparkrunner run --warm``), else the reason they cannot. ``requirements``: the model's own
    packages (:class:`sparkrunner.requirements.Requirements`), if it names any.
    """
    asked = document.get(MODE_FIELD) or "auto"
    reason = cold_reason(spec, settings, asked, master)
    if reason is None and requirements is not None:
        # A warm server runs on the service's own environment; none is kept per package set.
        reason = (f"the model brings its own packages ({requirements.source}), and warm servers "
                  "run on the service's own Python environment")
    if reason is None and warm_unavailable is not None:
        reason = warm_unavailable
    if reason is None:
        return Execution(Mode.WARM, "eligible: runs on a warm Spark Connect server"), []
    if asked == "warm":
        return Execution(Mode.COLD, reason), [FieldError(
            f"$.{MODE_FIELD}", f"'warm' was asked, but the job cannot run warm: {reason}; "
                               "use 'auto' to run it cold then, or 'cold'")]
    return Execution(Mode.COLD, reason), []


def cold_reason(spec: Any, settings: ResolvedSettings, asked: str, master: str) -> str | None:
    """Why the job must run cold on ``master``; None when it can run warm."""
    if not isinstance(spec, JobSpec):
        return "a script job (a Livy batch) always runs with a spark-submit of its own"
    if asked == "cold":
        return f"the job asks for it ({MODE_FIELD} 'cold')"
    ignored = IGNORED_ON_LOCAL if master.startswith("local") else frozenset()
    needs_jvm = sorted(p for p in settings.chosen
                       if not p.startswith(SESSION_SETTING_PREFIX) and p not in ignored)
    if needs_jvm:
        return (f"its settings {', '.join(needs_jvm)} need a JVM of their own "
                f"(a warm session takes only {SESSION_SETTING_PREFIX}* settings)")
    if spec.scoring is not None:  # sparkrunner's scoring path runs on both
        for url in spec.scoring.attachments:
            if local_path(url) is None:  # artifacts are uploaded from the job's process
                return (f"the model attachment {url!r} is not a local file, and a warm run ships "
                        "only local files to the Python workers")
        return None
    for source in ([spec.primary] if spec.primary else []) + list(spec.modules):
        found = jvm_api_use(source)
        if found:
            return (f"{source.filename} line {found[0]} uses {found[1]}, which Spark Connect "
                    "does not offer")
    return None


def jvm_api_use(source: SourceFile) -> tuple[int, str] | None:
    """(line, what) of the first use of the JVM-backed API in ``source``; None when there is none
    (or it does not parse: then the job fails as it would cold)."""
    try:
        tree = ast.parse(source.text, filename=source.filename)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in JVM_API_NAMES:
            return node.lineno, f"'.{node.attr}'"
        if isinstance(node, ast.Name) and node.id in JVM_API_NAMES:
            return node.lineno, f"{node.id!r}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                       else [alias.name for alias in node.names])
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) else []
            for module in modules:
                if module.startswith(JVM_API_MODULES):
                    return node.lineno, f"the module {module}"
            for name in names:
                if name in JVM_API_NAMES:
                    return node.lineno, f"{name!r}"
    return None
