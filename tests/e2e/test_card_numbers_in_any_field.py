"""Card numbers in every field, every separator style and every digit script, sent through
the real local stack: none of them ends up in clear in the stream, S3, the database or a log.

Three ways in: merchants posting through the API (JSON array, NDJSON, CSV, single records;
every such record is refused), another producer writing to the stream directly (the
stream-writer quarantines its records), and another producer landing an object in S3
directly (the db-loader quarantines its lines). Then every Kinesis record, every S3
object, the text of every row of every table (read as the admin role) and every process's
log are scanned for every card number in any written form.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
import httpx
import psycopg
import pytest
from card_number_forms import written_card_numbers, written_card_numbers_in
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from local_stack_texts import database_texts, log_texts, s3_texts, stream_texts
from stream_lines import stream_line

from cardstream.generator import iter_rows
from cardstream_shared.card_numbers import HEX_ID_FIELDS
from cardstream_shared.contract import KAGGLE_FIELDS, StreamEnvelope, TransactionIn
from cardstream_shared.pan import PanKeyring

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LANDED_KEY = "raw/dt=2026-12-05/hour=00/another-producer.jsonl.gz"


def _wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(KAGGLE_FIELDS)
    writer.writerows([["" if row[f] is None else row[f] for f in KAGGLE_FIELDS] for row in rows])
    return out.getvalue().encode()


@settings(max_examples=1, deadline=None, phases=[Phase.generate], database=None)
@given(data=st.data())
def test_card_numbers_in_any_field_end_up_nowhere_in_clear(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    tmp_path = tmp_path_factory.mktemp("pans")
    state = tmp_path / "state"
    with (tmp_path / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "cardstream.cli", "up", "--state-dir", str(state)),
                *("--api-port", "0", "--dashboard-port", "0"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until(
            lambda: (state / "stack.json").exists() or process.poll() is not None,
            300,
            "the stack",
        )
        assert process.poll() is None, (tmp_path / "up.log").read_text()[-4000:]
        info = json.loads((state / "stack.json").read_text())
        admin = info["admin_database_url"]
        valid = [row.as_dict() | {"trans_num": f"ok-{i}"} for i, row in enumerate(iter_rows(12, 5))]

        drawn: set[str] = set()

        def draw(field: str = "") -> tuple[str, str]:
            # Each card number is drawn once, and none is part of another: the stream
            # legitimately holds what the direct producer wrote, and a scan for one card
            # number must not find it inside another that may be there.
            pan, text = data.draw(
                written_card_numbers.filter(
                    lambda card: not any(card[0] in d or d in card[0] for d in drawn)
                )
            )
            drawn.add(pan)
            if field not in HEX_ID_FIELDS:
                # In free text, also glued to a word ("Visa4111111111111111").
                text = data.draw(st.sampled_from(["", "Visa"])) + text
            return pan, text

        # 1. Merchants: a card number in every text field, in every format.
        through_api: set[str] = set()
        refused: list[dict[str, Any]] = []
        for _ in range(4):
            for field in TransactionIn.TEXT_FIELDS:
                pan, text = draw(field)
                through_api.add(pan)
                refused.append(valid[0] | {"trans_num": f"pan-{len(refused)}", field: text})
        quarter = len(refused) // 4
        headers = {"Authorization": f"Bearer {info['token']}"}
        answers = []
        with httpx.Client(base_url=info["api_url"], headers=headers, timeout=60) as api:
            batches: list[tuple[str, list[dict[str, Any]]]] = [
                ("application/json", refused[:quarter] + valid[:4]),
                ("application/x-ndjson", refused[quarter : 2 * quarter] + valid[4:8]),
                ("text/csv", refused[2 * quarter : 3 * quarter] + valid[8:]),
            ]
            for media_type, rows in batches:
                if media_type == "application/json":
                    body = json.dumps(rows).encode()
                elif media_type == "text/csv":
                    body = _csv(rows)
                else:
                    body = b"\n".join(json.dumps(r, ensure_ascii=False).encode() for r in rows)
                answer = api.post(
                    "/v1/transactions/batch", content=body, headers={"Content-Type": media_type}
                )
                assert answer.status_code == 200, answer.text
                statuses = [r["status"] for r in answer.json()["results"]]
                assert statuses == ["rejected"] * quarter + ["accepted"] * 4, answer.text
                answers.append(answer.text)
            for row in refused[3 * quarter :]:
                answer = api.post("/v1/transactions", json=row)
                assert answer.status_code == 422
                answers.append(answer.text)
        assert written_card_numbers_in("\n".join(answers), through_api) == set()

        # 2. Another producer on the stream: envelopes with a card number in a field.
        keyring = PanKeyring.from_secret_string(PanKeyring.new_secret_string())
        base = json.loads(stream_line(valid[0] | {"trans_num": "other-producer"}, keyring))
        on_stream: set[str] = set()
        records = []
        for field in StreamEnvelope.TEXT_FIELDS:
            pan, text = draw(field)
            on_stream.add(pan)
            line = json.dumps(base | {"trans_num": f"stream-{len(records)}", field: text})
            records.append({"Data": line.encode(), "PartitionKey": f"producer-{len(records)}"})
        kinesis = boto3.client(
            "kinesis", endpoint_url=info["aws_endpoint_url"], region_name=info["aws_region"]
        )
        kinesis.put_records(StreamName=info["stream_name"], Records=records)

        # 3. Another producer landing an object: a card number in any field, or as a name.
        in_object: set[str] = set()
        lines = []
        for field in [*StreamEnvelope.TEXT_FIELDS, "note"]:
            pan, text = draw(field)
            in_object.add(pan)
            lines.append(json.dumps(base | {"trans_num": f"landed-{len(lines)}", field: text}))
        pan, text = draw()
        in_object.add(pan)
        lines.append(json.dumps(base | {text: "1", "trans_num": "landed-key"}))
        s3 = boto3.client(
            "s3", endpoint_url=info["aws_endpoint_url"], region_name=info["aws_region"]
        )
        s3.put_object(
            Bucket=info["bucket"],
            Key=LANDED_KEY,
            Body=gzip.compress("\n".join(lines).encode()),
        )

        _wait_until(
            lambda: _count(admin, "SELECT count(*) FROM cardstream.transaction") == len(valid),
            300,
            "the valid rows to load",
        )
        _wait_until(
            lambda: _count(admin, "SELECT count(*) FROM cardstream.quarantined_row") == len(lines),
            300,
            "the landed object's lines to be quarantined",
        )
        _wait_until(
            lambda: any(
                key.startswith(f"s3://{info['bucket']}/quarantine/") for key, _ in s3_texts(info)
            ),
            300,
            "the stream-writer's quarantine object",
        )
        everything = through_api | on_stream | in_object
        scanned = 0
        for where, text in stream_texts(info):
            scanned += 1
            assert not written_card_numbers_in(text, through_api | in_object), where
        for where, text in s3_texts(info):
            scanned += 1
            pans = everything - in_object if where.endswith(LANDED_KEY) else everything
            assert not written_card_numbers_in(text, pans), where
        for where, text in database_texts(admin):
            scanned += 1
            assert not written_card_numbers_in(text, everything), where
        for where, text in log_texts(state):
            scanned += 1
            assert not written_card_numbers_in(text, everything), where
        assert scanned > len(valid)
        print(f"scanned {scanned} texts for {len(everything)} card numbers, {dt.datetime.now()}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.wait(120)
