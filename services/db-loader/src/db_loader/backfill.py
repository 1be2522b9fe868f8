"""``cardstream load PATH_OR_S3_URI``: backfill Kaggle CSV files or landed objects directly.

The original design's S3-to-RDS function, done properly: the same load path as the SQS
loader (validation, quarantine, dedupe, dimension upserts, ledger), so a backfill can be
re-run, interrupted and resumed without duplicating a transaction.

* Kaggle CSV (``.csv``): each row is validated against the input contract, its card number
  tokenized with the PAN key from Secrets Manager and dropped, and the rows are loaded in
  chunks, each chunk one ledger entry (``file`` bucket, ``<path>#rows=<first>-<last>``
  key, the file's SHA-256 as etag), so reloading the same file is a no-op.
* Landed objects (``s3://bucket/key`` or ``s3://bucket/prefix/``): every ``.jsonl.gz``
  object under it, each one ledger entry exactly as the SQS loader records it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from pydantic import ValidationError

from cardstream_shared import resource_names as names
from cardstream_shared.aws import aio_client
from cardstream_shared.database import create_pool, database_url
from cardstream_shared.pan import PanKeyring
from cardstream_shared.settings import describe_errors
from cardstream_shared.stream_records import EnvelopeWriter
from cardstream_shared.transaction_input import BodyError, Rejected, Transaction, read_csv
from db_loader.db import APPLICATION_NAME
from db_loader.ledger import SourceObject
from db_loader.loader import KnownDimensions, LoadResult, PartitionCache, load_batch
from db_loader.object_reader import Limits, fetch_object
from db_loader.quarantine import QuarantineEntry
from db_loader.rows import PreparedBatch, prepare, prepare_object
from db_loader.settings import LoaderSettings

CHUNK_ROWS: Final = 10_000
BACKFILL_CLIENT_ID: Final = "backfill"
FILE_BUCKET: Final = "file"


def envelope_line(txn: Transaction, keyring: PanKeyring, writer: EnvelopeWriter) -> bytes:
    """The NDJSON line ingest-api would have produced for ``txn`` (no PAN in it); its
    ingest id is derived from ``trans_num``, so a reload writes the same line."""
    return writer.to_json_bytes(
        txn,
        keyring.tokenize(txn.cc_num),
        ingest_id=uuid.uuid5(uuid.NAMESPACE_URL, f"cardstream-backfill:{txn.trans_num}"),
    )


def _rejected(number: int, outcome: Rejected) -> QuarantineEntry:
    # Only the reasons and the id are kept: the row's values may hold a card number that
    # failed our checks, and the file itself names the row.
    row = {"trans_num": outcome.trans_num} if outcome.trans_num else None
    return QuarantineEntry(number, [e.as_dict() for e in outcome.errors], row, None)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_batches(
    path: Path,
    keyring: PanKeyring,
    *,
    chunk_rows: int = CHUNK_ROWS,
    client_id: str = BACKFILL_CLIENT_ID,
) -> Iterator[tuple[SourceObject, PreparedBatch]]:
    """A Kaggle CSV file as ledger-identified chunks of prepared rows."""
    etag = _file_sha256(path)
    resolved = str(path.resolve())
    writer = EnvelopeWriter(client_id=client_id, received_at=dt.datetime.now(dt.UTC))
    with path.open(encoding="utf-8-sig", newline="") as handle:
        records = enumerate(read_csv(handle), start=1)
        done = False
        while not done:
            lines: list[tuple[int, bytes]] = []
            rejected: list[QuarantineEntry] = []
            first = last = None
            for number, outcome in records:
                first = number if first is None else first
                last = number
                if isinstance(outcome, Rejected):
                    rejected.append(_rejected(number, outcome))
                else:
                    lines.append((number, envelope_line(outcome, keyring, writer)))
                if last - first + 1 >= chunk_rows:
                    break
            else:
                done = True
            if first is None or last is None:
                return
            batch = prepare(lines)
            batch.quarantined.extend(rejected)
            batch.row_count += len(rejected)
            source = SourceObject(
                bucket=FILE_BUCKET, key=f"{resolved}#rows={first}-{last}", etag=etag
            )
            yield source, batch


@dataclass
class Progress:
    """A one-line progress bar on a terminal (plain lines otherwise)."""

    total: int | None
    out: TextIO = sys.stderr
    rows: int = 0
    inserted: int = 0
    quarantined: int = 0
    objects: int = 0
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = time.monotonic()

    def add(self, result: LoadResult) -> None:
        self.objects += 1
        self.rows += result.row_count
        self.inserted += result.inserted_count
        self.quarantined += result.quarantined_count
        self.show()

    def show(self, *, final: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.rows / elapsed
        text = (
            f"{self.rows:,} rows, {self.inserted:,} new, {self.quarantined:,} quarantined,"
            f" {self.objects:,} objects, {rate:,.0f} rows/s"
        )
        if self.total:
            share = min(self.rows / self.total, 1.0)
            filled = int(share * 30)
            text = f"[{'#' * filled}{'.' * (30 - filled)}] {share:6.1%} " + text
        if self.out.isatty() and not final:
            self.out.write("\r" + text)
        else:
            self.out.write(text + "\n")
        self.out.flush()


def _count_csv_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return max(
            sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b"")) - 1, 0
        )


async def _pan_keyring(settings: LoaderSettings, secret_id: str) -> PanKeyring:
    async with aio_client("secretsmanager", settings) as client:
        response = await client.get_secret_value(SecretId=secret_id)
    return PanKeyring.from_secret_string(str(response["SecretString"]))


async def _list_keys(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str, int]]:
    keys: list[tuple[str, str, int]] = []
    paginator = s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith((".jsonl.gz", ".jsonl")):
                keys.append((item["Key"], str(item["ETag"]).strip('"'), int(item["Size"])))
    return keys


async def backfill(
    target: str, settings: LoaderSettings, *, pan_key_secret_id: str, out: TextIO
) -> Progress:
    """Load ``target`` (a CSV path or an ``s3://`` URI) and return the final progress."""
    pool = await create_pool(
        await database_url(settings),
        application_name=APPLICATION_NAME,
        min_size=1,
        max_size=settings.pool_max_size,
        statement_timeout_s=settings.statement_timeout_s,
    )
    partitions = PartitionCache()
    dimensions = KnownDimensions()
    try:
        if target.startswith("s3://"):
            bucket, _, prefix = target.removeprefix("s3://").partition("/")
            limits = Limits(
                settings.max_object_bytes, settings.max_decompressed_bytes, settings.max_line_bytes
            )
            async with aio_client("s3", settings) as s3:
                keys = await _list_keys(s3, bucket, prefix)
                progress = Progress(total=None, out=out)
                for key, etag, size in keys:
                    source = SourceObject(bucket=bucket, key=key, etag=etag, size_bytes=size)
                    identity, body = await fetch_object(s3, source, limits)
                    batch = await asyncio.to_thread(prepare_object, key, body, limits)
                    progress.add(
                        await load_batch(
                            pool, identity, batch, partitions=partitions, dimensions=dimensions
                        )
                    )
        else:
            path = Path(target)
            keyring = await _pan_keyring(settings, pan_key_secret_id)
            progress = Progress(total=_count_csv_rows(path), out=out)
            for source, batch in csv_batches(path, keyring):
                progress.add(
                    await load_batch(
                        pool, source, batch, partitions=partitions, dimensions=dimensions
                    )
                )
        progress.show(final=True)
        return progress
    finally:
        await pool.close()


class _BackfillSettings(LoaderSettings):
    """The loader's settings without a queue: a backfill reads no SQS."""

    queue_url: str = "unused-by-backfill"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cardstream load``."""
    parser.add_argument("target", help="Kaggle CSV file, or s3://bucket/key or s3://bucket/prefix/")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("LOADER_DATABASE_URL"),
        help="loader-role PostgreSQL URL (default: $LOADER_DATABASE_URL, else the secret "
        f"{names.DB_LOADER_SECRET})",
    )
    parser.add_argument(
        "--pan-key-secret-id", default=names.PAN_KEY_SECRET, help="PAN key secret (CSV only)"
    )


def run(args: argparse.Namespace) -> int:
    """``cardstream load``: returns the process exit status."""
    overrides: dict[str, Any] = {}
    if args.database_url:
        overrides["database_url"] = args.database_url
    try:
        settings = _BackfillSettings(**overrides)
    except ValidationError as error:
        print("cardstream load: invalid configuration:", file=sys.stderr)
        for line in describe_errors(_BackfillSettings, error):
            print(f"  {line}", file=sys.stderr)
        return 2
    if not args.target.startswith("s3://") and not Path(args.target).is_file():
        print(f"cardstream load: {args.target} is not a file or an s3:// URI", file=sys.stderr)
        return 2
    try:
        progress = asyncio.run(
            backfill(
                args.target, settings, pan_key_secret_id=args.pan_key_secret_id, out=sys.stderr
            )
        )
    except BodyError as error:
        print(f"cardstream load: {args.target}: {error.detail}", file=sys.stderr)
        return 2
    return 0 if progress.quarantined == 0 else 1
