"""Landing objects in S3: gzip NDJSON under deterministic keys, written with If-None-Match.

A key names its shard and the first and last sequence numbers it holds, so a retry of the
same batch targets the same key; the conditional put refuses to replace an object that an
earlier attempt (or a fenced zombie) already wrote, and that refusal means "already written".
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import time
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import ClientError

from cardstream_shared import resource_names as names

log = logging.getLogger(__name__)

RAW_SUFFIX: Final = ".jsonl.gz"


def object_key(
    prefix: str, shard_id: str, first_sequence: str, last_sequence: str, flushed_at: dt.datetime
) -> str:
    """``<prefix>dt=YYYY-MM-DD/hour=HH/<shard>-<first>-<last>.jsonl.gz`` (UTC flush time)."""
    at = flushed_at.astimezone(dt.UTC)
    return (
        f"{prefix}dt={at:%Y-%m-%d}/hour={at:%H}/"
        f"{shard_id}-{first_sequence}-{last_sequence}{RAW_SUFFIX}"
    )


def raw_key(shard_id: str, first: str, last: str, flushed_at: dt.datetime) -> str:
    """Key of a landed object under ``raw/`` (the prefix that notifies the loader)."""
    return object_key(names.RAW_PREFIX, shard_id, first, last, flushed_at)


def quarantine_key(shard_id: str, first: str, last: str, flushed_at: dt.datetime) -> str:
    """Key of a quarantine object (no notification is configured for this prefix)."""
    return object_key(names.QUARANTINE_PREFIX, shard_id, first, last, flushed_at)


def ndjson_gzip(lines: list[bytes], level: int) -> bytes:
    """One record per line, newline-terminated, gzip-compressed."""
    return gzip.compress(b"\n".join(lines) + b"\n", compresslevel=level, mtime=0)


@dataclass(frozen=True)
class PutResult:
    """Outcome of one conditional put."""

    key: str
    created: bool
    seconds: float


class S3Sink:
    """Conditional puts and existence checks on the landing bucket."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self.bucket = bucket

    async def put(self, key: str, body: bytes, metadata: dict[str, str]) -> PutResult:
        """Write ``body`` at ``key`` unless an object is there already."""
        started = time.perf_counter()
        try:
            await self._s3.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                # No Content-Encoding: clients would then inflate the body on download and
                # the .gz object would no longer be what its name says.
                ContentType="application/gzip",
                Metadata=metadata,
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code != "PreconditionFailed":
                raise
            # An earlier attempt wrote this key: same shard and sequence range, same records.
            log.info("object already written", extra={"key": key})
            return PutResult(key, created=False, seconds=time.perf_counter() - started)
        return PutResult(key, created=True, seconds=time.perf_counter() - started)

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is in the bucket."""
        try:
            await self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True
