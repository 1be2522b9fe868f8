"""Read a landed object: stream it from S3, gunzip it incrementally, split NDJSON lines.

Every size is bounded (docs/reliability.md F10): the object, its decompressed content (a
small gzip can expand enormously) and each line. An object that breaks an object bound, is
not valid gzip, or no longer exists is unreadable: the error propagates, the SQS message is
not deleted, and the redrive policy moves it to the DLQ after maxReceiveCount receives. A
line over its bound costs only itself: it comes out as an :class:`OverlongLine` (its
beginning; the rest is read past, never held), which the rows quarantine, and the object's
other lines load.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, cast

from isal import isal_zlib

from db_loader.ledger import SourceObject

_CHUNK_BYTES: Final = 256 * 1024
# What an over-long line keeps for its quarantine row: enough to recognise it.
_EXCERPT_BYTES: Final = 4096
# The class isal raises for bad input (its type stub declares an instance, not a class).
_INFLATE_ERROR: Final = cast("type[Exception]", isal_zlib.error)


class UnreadableObjectError(Exception):
    """The object cannot be read at all; ``reason`` is a short label for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[UnreadableObjectError], tuple[str, str]]:
        # Raised in a worker process: must survive pickling back to the loader.
        return (type(self), (self.reason, str(self)))


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while reading one object."""

    max_object_bytes: int
    max_decompressed_bytes: int
    max_line_bytes: int


@dataclass(frozen=True, slots=True)
class OverlongLine:
    """A line longer than ``limit`` bytes, by its first bytes."""

    excerpt: bytes
    limit: int


# One numbered line of an object (1-based).
Line = tuple[int, bytes | OverlongLine]


class _Decoder:
    """Incremental gunzip (or pass-through) with a bound on the output."""

    def __init__(self, gzipped: bool, limits: Limits) -> None:
        # wbits 16+MAX_WBITS: gzip header and trailer; concatenated members are handled below.
        # ISA-L's zlib-compatible inflate is ~3.5 times faster than zlib's on landed objects.
        self._inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS) if gzipped else None
        self._limits = limits
        self.produced = 0

    def feed(self, data: bytes) -> bytes:
        if self._inflate is None:
            out = data
        else:
            out = b""
            while data:
                try:
                    out += self._inflate.decompress(data)
                except _INFLATE_ERROR as exc:
                    raise UnreadableObjectError(
                        "not_gzip", f"object is not valid gzip: {exc}"
                    ) from None
                data = self._inflate.unused_data
                if data:
                    # A new gzip member starts here (concatenated gzip is still valid gzip).
                    self._inflate = isal_zlib.decompressobj(16 + isal_zlib.MAX_WBITS)
            self._check(out)
        return out

    def finish(self) -> None:
        if self._inflate is not None and not self._inflate.eof:
            raise UnreadableObjectError("truncated", "gzip stream is truncated")

    def _check(self, out: bytes) -> None:
        self.produced += len(out)
        if self.produced > self._limits.max_decompressed_bytes:
            raise UnreadableObjectError(
                "too_large",
                f"object expands past {self._limits.max_decompressed_bytes} bytes",
            )


class LineSplitter:
    """Turns an object's chunks into numbered lines (1-based), decoding as it goes."""

    def __init__(self, *, gzipped: bool, limits: Limits) -> None:
        self._decoder = _Decoder(gzipped, limits)
        self._limits = limits
        self._pending = b""
        # The line being read past, once it is over the bound.
        self._overlong: OverlongLine | None = None
        self._next_line = 1
        self._read = 0

    def feed(self, chunk: bytes) -> list[Line]:
        """Lines completed by ``chunk``."""
        self._read += len(chunk)
        if self._read > self._limits.max_object_bytes:
            raise UnreadableObjectError(
                "too_large", f"object exceeds {self._limits.max_object_bytes} bytes"
            )
        data = self._decoder.feed(chunk)
        lines: list[Line] = []
        if self._overlong is not None:
            end = data.find(b"\n")
            if end < 0:
                return lines
            lines.append((self._next_line, self._overlong))
            self._next_line += 1
            self._overlong = None
            data = data[end + 1 :]
        parts = (self._pending + data).split(b"\n")
        self._pending = parts.pop()
        limit = self._limits.max_line_bytes
        if len(self._pending) > limit:
            self._overlong = OverlongLine(self._pending[:_EXCERPT_BYTES], limit)
            self._pending = b""
        numbered = enumerate(parts, start=self._next_line)
        # The bound is checked at C speed; the over-long lines are looked for only then.
        if parts and max(map(len, parts)) > limit:
            lines += [
                (n, OverlongLine(part[:_EXCERPT_BYTES], limit) if len(part) > limit else part)
                for n, part in numbered
            ]
        else:
            lines += numbered
        self._next_line += len(parts)
        return lines

    def finish(self) -> list[Line]:
        """The last line, if the object does not end with a newline."""
        self._decoder.finish()
        if self._overlong is not None:
            return [(self._next_line, self._overlong)]
        return [(self._next_line, self._pending)] if self._pending else []


def decode_lines(chunks: Iterable[bytes], *, gzipped: bool, limits: Limits) -> Iterator[Line]:
    """Numbered lines of an object given as chunks (local files, tests)."""
    splitter = LineSplitter(gzipped=gzipped, limits=limits)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def is_gzip_key(key: str) -> bool:
    """Landed objects are ``.jsonl.gz``; a plain ``.jsonl`` is accepted for backfills."""
    return key.endswith(".gz")


async def fetch_object(s3: Any, source: SourceObject, limits: Limits) -> tuple[SourceObject, bytes]:
    """Download one object (still compressed; bounded by ``max_object_bytes``); returns its
    identity, with the etag S3 reports, and its body."""
    from botocore.exceptions import ClientError

    if source.size_bytes is not None and source.size_bytes > limits.max_object_bytes:
        raise UnreadableObjectError("too_large", f"object exceeds {limits.max_object_bytes} bytes")
    kwargs: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
    if source.version_id:
        kwargs["VersionId"] = source.version_id
    try:
        response = await s3.get_object(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "NoSuchVersion", "404"):
            raise UnreadableObjectError("missing", f"object {source.uri} does not exist") from None
        raise
    length = int(response.get("ContentLength") or 0)
    etag = str(response.get("ETag", source.etag)).strip('"') or source.etag
    chunks: list[bytes] = []
    read = 0
    async with response["Body"] as body:
        if length > limits.max_object_bytes:
            raise UnreadableObjectError(
                "too_large", f"object exceeds {limits.max_object_bytes} bytes"
            )
        while chunk := await body.read(_CHUNK_BYTES):
            read += len(chunk)
            if read > limits.max_object_bytes:
                raise UnreadableObjectError(
                    "too_large", f"object exceeds {limits.max_object_bytes} bytes"
                )
            chunks.append(chunk)
    identity = SourceObject(
        bucket=source.bucket,
        key=source.key,
        etag=etag,
        size_bytes=length or source.size_bytes,
        event_time=source.event_time,
        version_id=source.version_id,
    )
    return identity, b"".join(chunks)
