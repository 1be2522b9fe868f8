"""Capacity model: what cardstream needs, and costs, at a sustained load, from the figures.

Reads the project's latest benchmark figures (bench/figures.toml: records per CPU-second of
each service, the database's CPU, WAL and storage per row) and the prices
(bench/prices.toml), and prints the tables of docs/cost.md's capacity model: for 100, 1,000,
5,000 and 20,000 transactions per second sustained, the stream's shards, the tasks of each
service, the database class and the monthly cost, with what runs out first; then one
PostgreSQL primary against the instance classes. Run it again when a figure or a price
moves and paste its output into docs/cost.md (a test holds the two equal)::

    uv run python bench/capacity_model.py

Traffic is modelled as batches of 500 records (the ingest-api's bulk route). Everything
else it assumes is a named constant below, with its reason.
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardstream_infra.config import DeploymentConfig

BENCH = Path(__file__).resolve().parent
LOADS = (100, 1_000, 5_000, 20_000)
SECONDS_PER_MONTH = 730 * 3600
# Share of a task's (or the database's) CPU the plan may use: the rest absorbs the move
# from the development machine to AWS, bursts, and a task being replaced.
UTILIZATION = 0.6
# Share of the instance's EBS baseline bandwidth the database's writes may use.
EBS_UTILIZATION = 0.6
# PostgreSQL writes each WAL byte once more into the data files (checkpoints): WAL and
# data together are what the instance pushes to its storage, twice the WAL.
# Rows kept in PostgreSQL (older monthly partitions detached; the landing bucket keeps
# every raw object 400 days).
DAYS_KEPT = 30
# Share of the database's memory the indexes being inserted into may take (the rest is
# PostgreSQL's own and the operating system's). While they fit, the benchmark's per-row
# CPU and WAL hold (its 200,000 rows were all in memory). Past it, every row reads and
# later writes one leaf page of each index with a random key (trans_num registry, the
# partition's primary key, the card index), and after a checkpoint the first change to a
# page writes the whole page into the WAL (full_page_writes): a model, not a measurement.
INDEX_MEMORY_SHARE = 0.5
RANDOM_PAGES_PER_ROW = 3
PAGE = 8192
BATCH_RECORDS = 500
# Kinesis: per shard, 1,000 records/s and 1 MiB/s written; on-demand mode keeps capacity
# for twice the peak of the last 30 days and starts at 4 shards.
SHARD_RECORDS_S = 1_000
SHARD_BYTES_S = 1 << 20
ON_DEMAND_HEADROOM = 2
ON_DEMAND_MIN_SHARDS = 4
# A provisioned stream sized for the load at 80 % of its shards' write limit.
PROVISIONED_UTILIZATION = 0.8
# The stream-writer flushes every shard at least every 2 s (WRITER_FLUSH_MAX_AGE_S): one
# S3 object, one SQS message and its receive and delete per shard per 2 s.
FLUSHES_PER_SHARD_S = 0.5
SQS_REQUESTS_PER_OBJECT = 3
# Interface VPC endpoints (the tasks' AWS APIs, Parameter Store for the merchant registry,
# and the sign-in relay's execute-api) in 2 zones; the web ACLs (the API stage's, the load
# balancer's) and their rules. A test compares them with the template.
ENDPOINTS = 9
ZONES = 2
WEB_ACLS = 2
WEB_ACL_RULES = 9


@dataclass(frozen=True)
class Task:
    """A service's task size and autoscaling floor, as the services stack deploys them."""

    vcpu: float
    memory_gb: float
    floor: int


# infra/src/cardstream_infra/stacks/services_stack.py (a test compares the template).
TASKS = {
    "ingest-api": Task(1.0, 2.0, 2),
    "stream-writer": Task(0.5, 1.0, 1),
    "db-loader": Task(1.0, 2.0, 1),
    "dashboard": Task(0.5, 1.0, 1),
}


@dataclass(frozen=True)
class DbClass:
    """An RDS instance class and its limits for one PostgreSQL primary."""

    name: str
    hour: float
    vcpus: int
    memory_gib: float
    cpu_rows_s: float
    bandwidth_bytes_s: float
    iops: float

    @property
    def index_memory_bytes(self) -> float:
        return self.memory_gib * (1 << 30) * INDEX_MEMORY_SHARE


@dataclass(frozen=True)
class Database:
    """The primaries one load needs: class, count, storage and what bounds them."""

    db: DbClass
    primaries: int
    storage_gb: float
    iops: float
    cached: bool
    rows_s: float
    bound: str


@dataclass(frozen=True)
class Step:
    """What one sustained load needs and costs."""

    tps: int
    shards: int
    provisioned_shards: int
    tasks: dict[str, int]
    database: Database
    cost_on_demand: float
    cost_provisioned: float
    first: str


def load_toml(name: str) -> dict[str, Any]:
    with (BENCH / name).open("rb") as handle:
        return tomllib.load(handle)


def db_classes(figures: dict[str, Any], prices: dict[str, Any]) -> list[DbClass]:
    """The classes of prices.toml, smallest first, with their CPU's rows/s from the figures."""
    loader = figures["db_loader"]
    # PostgreSQL's CPU per row, with the monitoring rules inside the load transaction.
    cpu_per_row = loader["postgres_cpu_seconds"] / loader["rows"]
    cpu_per_row /= figures["monitoring_rules"]["load_transaction_ratio"]
    return [
        DbClass(
            name=name,
            hour=spec["hour"],
            vcpus=spec["vcpus"],
            memory_gib=spec["memory_gib"],
            cpu_rows_s=spec["sustained_vcpus"] * UTILIZATION / cpu_per_row,
            bandwidth_bytes_s=spec["ebs_baseline_mbps"] * 1e6 / 8 * EBS_UTILIZATION,
            iops=spec["ebs_baseline_iops"],
        )
        for name, spec in prices["rds"]["classes"].items()
    ]


def storage_iops_rows_s(db: DbClass, storage_iops: float) -> float:
    """Rows/s when every row costs random page reads and writes (indexes beyond memory)."""
    return min(db.iops, storage_iops) * EBS_UTILIZATION / (2 * RANDOM_PAGES_PER_ROW)


def database_for(tps: int, figures: dict[str, Any], prices: dict[str, Any]) -> Database:
    """The smallest class that sustains ``tps`` with DAYS_KEPT days of rows, or as many
    primaries of the largest as it takes (the rows partitioned between them)."""
    storage = figures["db_loader"]["storage"]
    rds = prices["rds"]
    classes = db_classes(figures, prices)
    for primaries in range(1, 65):
        share = tps / primaries
        kept = share * 86_400 * DAYS_KEPT
        storage_gb = max(100.0, kept * storage["stored_bytes_per_row"] / 1e9)
        large = storage_gb >= rds["gp3_large_from_gib"]
        baseline_iops = rds["gp3_baseline_iops_large" if large else "gp3_baseline_iops_small"]
        for db in classes:
            cached = kept * storage["index_bytes_per_row"] <= db.index_memory_bytes
            wal = storage["wal_bytes_per_row"] + (0 if cached else RANDOM_PAGES_PER_ROW * PAGE)
            limits = {"CPU": db.cpu_rows_s, "EBS bandwidth": db.bandwidth_bytes_s / (wal * 2)}
            iops = float(baseline_iops)
            if not cached:
                # Every row reads and later writes a leaf page of each random-keyed index;
                # storage is provisioned for that at EBS_UTILIZATION.
                storage_iops = rds["gp3_max_iops"] if large else baseline_iops
                limits["IOPS"] = storage_iops_rows_s(db, storage_iops)
                iops = max(iops, share * 2 * RANDOM_PAGES_PER_ROW / EBS_UTILIZATION)
            bound, rows_s = min(limits.items(), key=lambda item: item[1])
            if rows_s >= share and storage_gb <= rds["max_storage_gib"]:
                return Database(db, primaries, storage_gb, iops, cached, rows_s, bound)
    raise ValueError(f"no configuration of prices.toml's classes sustains {tps} rows/s")


def tasks_needed(tps: int, figures: dict[str, Any]) -> dict[str, int]:
    """Tasks per service for ``tps`` at UTILIZATION of each task's CPU, never below the floor."""
    loader = figures["db_loader"]
    per_cpu_s = {
        "ingest-api": figures["ingest_api"]["batched_records_per_cpu_second"],
        "stream-writer": figures["stream_writer"]["records_per_cpu_second"],
        "db-loader": loader["rows"] / loader["loader_cpu_seconds"],
    }
    needed = {}
    for service, rate in per_cpu_s.items():
        task = TASKS[service]
        needed[service] = max(task.floor, math.ceil(tps / (rate * task.vcpu * UTILIZATION)))
    needed["dashboard"] = TASKS["dashboard"].floor
    return needed


def on_demand_shards(tps: int, record_bytes: int) -> int:
    by_records = ON_DEMAND_HEADROOM * tps / SHARD_RECORDS_S
    by_bytes = ON_DEMAND_HEADROOM * tps * record_bytes / SHARD_BYTES_S
    return max(ON_DEMAND_MIN_SHARDS, math.ceil(max(by_records, by_bytes)))


def provisioned_shards(tps: int, record_bytes: int) -> int:
    limit = min(SHARD_RECORDS_S, SHARD_BYTES_S / record_bytes) * PROVISIONED_UTILIZATION
    return max(1, math.ceil(tps / limit))


def monthly_cost(
    tps: int,
    tasks: dict[str, int],
    shards: int,
    database: Database,
    stream: str,
    figures: dict[str, Any],
    prices: dict[str, Any],
    config: DeploymentConfig,
) -> float:
    """Monthly cost of the deployment at ``tps`` with a stream in mode ``stream``."""
    hours = prices["hours_per_month"]
    records = tps * SECONDS_PER_MONTH
    record_bytes = figures["record"]["envelope_bytes"]
    fargate = prices["fargate"]
    cost = hours * sum(
        count * (TASKS[s].vcpu * fargate["vcpu_hour"] + TASKS[s].memory_gb * fargate["gb_hour"])
        for s, count in tasks.items()
    )
    if stream == "on-demand":
        kinesis = prices["kinesis"]["on_demand"]
        cost += kinesis["stream_hour"] * hours
        cost += records * math.ceil(record_bytes / 1024) / (1 << 20) * kinesis["gb_in"]
        cost += records * record_bytes / (1 << 30) * kinesis["gb_out"]
    else:
        kinesis = prices["kinesis"]["provisioned"]
        cost += shards * kinesis["shard_hour"] * hours
        cost += records / 1e6 * kinesis["million_put_units"]
        if config.stream_retention_hours > 24:
            cost += shards * kinesis["extended_retention_shard_hour"] * hours
    rds = prices["rds"]
    copies = database.primaries * (2 if config.db_multi_az else 1)
    baseline = rds["gp3_baseline_iops_large"] if database.storage_gb >= 400 else 0
    extra_iops = max(0.0, database.iops - baseline) if baseline else 0.0
    cost += copies * (
        database.db.hour * hours
        + database.storage_gb * rds["gp3_gb_month"]
        + extra_iops * rds["gp3_iops_month"]
    )
    objects = shards * FLUSHES_PER_SHARD_S * SECONDS_PER_MONTH
    requests = prices["requests"]
    # Every request passes the API stage's web ACL and then the load balancer's.
    api_requests = records / BATCH_RECORDS
    cost += api_requests / 1e6 * (requests["rest_api_million"] + WEB_ACLS * requests["waf_million"])
    cost += objects / 1e3 * requests["s3_put_thousand"]
    cost += objects * SQS_REQUESTS_PER_OBJECT / 1e6 * requests["sqs_million"]
    network, fixed = prices["network"], prices["fixed"]
    cost += (ENDPOINTS * ZONES * network["endpoint_az_hour"] + network["alb_hour"]) * hours
    cost += fixed["kms_keys"] * fixed["kms_key_month"] + fixed["secrets"] * fixed["secret_month"]
    cost += WEB_ACLS * fixed["web_acl_month"] + WEB_ACL_RULES * fixed["web_acl_rule_month"]
    return float(cost)


def first_to_run_out(
    tps: int, shards: int, database: Database, figures: dict[str, Any], config: DeploymentConfig
) -> str:
    """The limit the deployment reaches first, with the multiple of ``tps`` it takes."""
    loader = figures["db_loader"]
    writer = figures["stream_writer"]["records_per_cpu_second"] * TASKS["stream-writer"].vcpu
    where = f"{database.primaries} x " if database.primaries > 1 else ""
    limits = {
        f"the database ({where}{database.db.name}, {database.bound})": (
            database.rows_s * database.primaries
        ),
        f"ingest-api at its ceiling of {config.ingest_max_tasks} tasks": (
            config.ingest_max_tasks * figures["ingest_api"]["batched_records_per_cpu_second"]
        ),
        f"stream-writer at its ceiling of one task per shard ({shards})": shards * writer,
        f"db-loader at its ceiling of {config.loader_max_tasks} tasks": (
            config.loader_max_tasks * loader["rows"] / loader["loader_cpu_seconds"]
        ),
        f"the API's throttle ({config.api_rate_limit} batches/s)": (
            config.api_rate_limit * BATCH_RECORDS
        ),
    }
    (first, at), (then, later) = sorted(limits.items(), key=lambda item: item[1])[:2]
    return f"{first} at {at / tps:,.1f}x; then {then} at {later / tps:,.1f}x"


def plan(figures: dict[str, Any], prices: dict[str, Any], config: DeploymentConfig) -> list[Step]:
    """The configuration and cost of every load in LOADS."""
    record_bytes = figures["record"]["envelope_bytes"]
    steps = []
    for tps in LOADS:
        tasks = tasks_needed(tps, figures)
        shards = on_demand_shards(tps, record_bytes)
        fixed_shards = provisioned_shards(tps, record_bytes)
        # The stream-writer never runs more tasks than the stream has shards.
        tasks["stream-writer"] = min(tasks["stream-writer"], shards)
        database = database_for(tps, figures, prices)
        costs = {
            mode: monthly_cost(tps, tasks, n, database, mode, figures, prices, config)
            for mode, n in (("on-demand", shards), ("provisioned", fixed_shards))
        }
        steps.append(
            Step(
                tps=tps,
                shards=shards,
                provisioned_shards=fixed_shards,
                tasks=tasks,
                database=database,
                cost_on_demand=costs["on-demand"],
                cost_provisioned=costs["provisioned"],
                first=first_to_run_out(tps, shards, database, figures, config),
            )
        )
    return steps


def render(figures: dict[str, Any], prices: dict[str, Any], config: DeploymentConfig) -> str:
    """The Markdown tables of docs/cost.md's capacity model."""
    az = "Multi-AZ" if config.db_multi_az else "Single-AZ"
    lines = [
        "| transactions/s | shards (on-demand) | ingest-api | stream-writer | db-loader"
        " | database | per month, on-demand stream | per month, provisioned stream"
        " | runs out first |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in plan(figures, prices, config):
        t, d = step.tasks, step.database
        primaries = f"{d.primaries} x " if d.primaries > 1 else ""
        lines.append(
            f"| {step.tps:,} | {step.shards} | {t['ingest-api']} | {t['stream-writer']}"
            f" | {t['db-loader']} | {primaries}{d.db.name} {az}, {d.storage_gb / 1000:,.1f} TB"
            f" and {d.iops:,.0f} IOPS each | ${step.cost_on_demand:,.0f}"
            f" | ${step.cost_provisioned:,.0f} (shards: {step.provisioned_shards})"
            f" | {step.first} |"
        )
    storage = figures["db_loader"]["storage"]
    rds = prices["rds"]
    lines += [
        "",
        "| class | vCPUs | memory GiB | rows/s, indexes in memory (CPU / EBS bandwidth)"
        " | rows/s, indexes beyond memory (IOPS, gp3 of 400 GiB or more)"
        " | hours until the indexes outgrow memory"
        f" at {LOADS[1]:,} / {LOADS[2]:,} / {LOADS[3]:,} rows/s | per hour, Single-AZ |",
        "|---|---|---|---|---|---|---|",
    ]
    for db in db_classes(figures, prices):
        by_bandwidth = db.bandwidth_bytes_s / (2 * storage["wal_bytes_per_row"])
        by_iops = storage_iops_rows_s(db, rds["gp3_max_iops"])
        hours = " / ".join(
            f"{db.index_memory_bytes / storage['index_bytes_per_row'] / (tps * 3600):,.1f}"
            for tps in LOADS[1:]
        )
        lines.append(
            f"| {db.name} | {db.vcpus} | {db.memory_gib:g} | {db.cpu_rows_s:,.0f}"
            f" / {by_bandwidth:,.0f} | {by_iops:,.0f} | {hours} | ${db.hour:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    sys.stdout.write(
        render(load_toml("figures.toml"), load_toml("prices.toml"), DeploymentConfig())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
