"""The Titanic example as an Airflow DAG: train → score → metrics, each a job on a sparkrunner service.

Build the example jobs, tell the DAG where they are, and name the service::

    python jobs/build_examples.py build/examples
    export SPARKRUNNER_EXAMPLES_DIR=$PWD/build/examples
    export AIRFLOW_CONN_SPARKRUNNER_DEFAULT='{"conn_type": "sparkrunner", "host": "127.0.0.1", "port": 8765}'
    airflow dags test titanic_sparkrunner

The job files are read when each task runs, not when the DAG is parsed, so the DAG parses before
they are built. The metrics job's result ({"accuracy": …, "auc": …, "rows": …}) is the metrics
task's XCom ``return_value``; every task also pushes its sparkrunner job id as ``job_id``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from sparkrunner.airflow import SparkRunnerJobOperator

# Without the variable: build/examples of the checkout this file (or its symlink) lives in.
EXAMPLES = Path(os.environ.get("SPARKRUNNER_EXAMPLES_DIR")
                or Path(__file__).resolve().parents[2] / "build" / "examples")

with DAG(
    dag_id="titanic_sparkrunner",
    description="Titanic survival: train, score and evaluate a PySpark model with sparkrunner.",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["sparkrunner", "example"],
    default_args={
        "retries": 1,
        "retry_delay": timedelta(seconds=30),
        "execution_timeout": timedelta(minutes=30),
    },
) as dag:
    # Deferrable: while Spark works, the tasks wait in the triggerer, not in worker slots.
    train, score, metrics = (
        SparkRunnerJobOperator(
            task_id=role,
            job=str(EXAMPLES / "jobs" / f"titanic-{role}.json"),
            deferrable=True,
            poll_interval=5,
        )
        for role in ("train", "score", "metrics")
    )
    train >> score >> metrics
