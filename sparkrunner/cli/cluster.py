"""``sparkrunner cluster up|down|status``: the development cluster (:mod:`sparkrunner.devcluster`).

Errors decide the exit code as everywhere (:mod:`.exits`): an impossible argument is 2, a
cluster that does not start or stop is 1, and so is ``status`` of a cluster that is not running.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..devcluster.daemons import DEFAULT_CLUSTER_DIR, MEMORY, START_TIMEOUT, down, status, up
from .common import add_command
from .exits import EPILOG, EXIT_FAILED, EXIT_OK


def add_commands(commands) -> None:
    """Adds ``cluster up|down|status``."""
    description = "a Spark standalone cluster on 127.0.0.1, from the pyspark wheel"
    cluster = commands.add_parser("cluster", help=description, description=description, epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str) -> argparse.ArgumentParser:
        sub = add_command(actions, name, handler, help)
        sub.add_argument("--cluster-dir", type=Path, default=DEFAULT_CLUSTER_DIR, metavar="DIR",
                         help=f"where the cluster keeps its record, secret, logs and work "
                              f"directories (default: {DEFAULT_CLUSTER_DIR})")
        return sub

    sub = command("up", cmd_up, "start a master and workers, and wait until they are all ALIVE")
    sub.add_argument("--workers", type=_positive_int, default=2, metavar="N",
                     help="number of workers (default: 2)")
    sub.add_argument("--cores-per-worker", type=_positive_int, default=1, metavar="N",
                     help="default: 1")
    sub.add_argument("--memory-per-worker", type=_memory, default="1g", metavar="SIZE",
                     help="default: 1g")
    sub.add_argument("--master-port", type=_port, default=7077, metavar="PORT",
                     help="default: 7077")
    sub.add_argument("--webui-port", type=_port, default=8080, metavar="PORT",
                     help="master web UI (default: 8080)")
    sub.add_argument("--worker-webui-port", type=_port_or_zero, default=8081, metavar="PORT",
                     help="first worker's web UI, the next get the following ports; 0 for any "
                          "free port (default: 8081)")
    sub.add_argument("--timeout", type=float, default=START_TIMEOUT, metavar="SECONDS",
                     help=f"give up if the cluster is not up by then (default: {START_TIMEOUT:.0f})")
    command("down", cmd_down, "stop the cluster's processes (safe to repeat)")
    sub = command("status", cmd_status, "say whether the cluster runs, with its workers "
                                        "(exit code 0 if it does, 1 if not)")
    sub.add_argument("--json", action="store_true", help="print the status as JSON")


def cmd_up(args: argparse.Namespace) -> int:
    info = up(args.cluster_dir, workers=args.workers, cores_per_worker=args.cores_per_worker,
              memory_per_worker=args.memory_per_worker, master_port=args.master_port,
              webui_port=args.webui_port, worker_webui_port=args.worker_webui_port,
              timeout=args.timeout)
    master = info.processes[0]
    print(f"started a Spark standalone cluster in {info.cluster_dir}")
    print(f"  master    {info.master_url}  pid {master.pid}  web UI {info.webui_url}")
    for proc in info.processes[1:]:
        print(f"  {proc.name:<9} pid {proc.pid}  {args.cores_per_worker} core(s), "
              f"{args.memory_per_worker}  log {proc.log}")
    print(f"  secret    {info.secret_file} (mode 0600)")
    print("run jobs on it with --config conf/standalone.yaml (its spark.conf_dir is "
          f"{info.client_conf_dir}, where spark-submit finds the secret)")
    print(f"stop it with: sparkrunner cluster down --cluster-dir {args.cluster_dir}")
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    for message in down(args.cluster_dir):
        print(message)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    report = status(args.cluster_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["recorded"]:
        print(f"no cluster is recorded in {report['cluster_dir']}")
    else:
        print(f"cluster in {report['cluster_dir']}: {'running' if report['running'] else 'NOT running'}")
        print(f"  master URL {report['master_url']}, web UI {report['webui_url']}")
        for proc in report["processes"]:
            print(f"  {proc['name']:<9} pid {proc['pid']:<8} {'alive' if proc['alive'] else 'gone'}")
        if report["master_error"]:
            print(f"  {report['master_error']}")
        for worker in report["workers"]:
            print(f"  worker {worker['id']}  {worker['state']}  {worker['cores']} core(s), "
                  f"{worker['memory']} MiB  {worker['webuiaddress']}")
    return EXIT_OK if report["running"] else EXIT_FAILED


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _port(text: str) -> int:
    value = _port_or_zero(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not a port here: name one between 1 and 65535")
    return value


def _port_or_zero(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return value


def _memory(text: str) -> str:
    if not MEMORY.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size such as 512m or 1g")
    return text
