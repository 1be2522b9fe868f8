"""PAN tokenization, log redaction and settings validation."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import Field

from cardstream_shared.json_logging import JsonFormatter
from cardstream_shared.pan import PanKeyring
from cardstream_shared.redaction import RedactingFilter, redact_text
from cardstream_shared.settings import ServiceSettings, load_settings

PAN = "4613314721966"  # 13 digits, Luhn-valid, from the published data


def test_tokens_are_keyed_stable_and_versioned() -> None:
    ring = PanKeyring.from_secret_string(PanKeyring.new_secret_string("v1"))
    other = PanKeyring.from_secret_string(PanKeyring.new_secret_string("v1"))
    token = ring.tokenize(PAN)
    assert token == ring.tokenize(PAN)
    assert token.token != other.tokenize(PAN).token  # a different key, a different token
    assert token.last4 == "1966"
    assert token.key_version == "v1"
    assert PAN not in token.token


def test_short_or_malformed_keys_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValueError, match="at least 32") as info:
        PanKeyring({"v1": b"short"}, "v1")
    assert "short" not in str(info.value)
    with pytest.raises(ValueError, match="malformed"):
        PanKeyring.from_secret_string('{"keys": {"v1": "c2VjcmV0"}}')


@pytest.mark.parametrize(
    "text",
    [
        f"card {PAN} declined",
        "card 4111 1111 1111 1111 declined",
        "card 4111-1111-1111-1111 declined",
        "pan=60416207185,",
        '{"cc_num": "2703186189652095"}',
    ],
)
def test_pans_are_redacted(text: str) -> None:
    out = redact_text(text)
    assert "[REDACTED]" in out
    digits = "".join(c for c in out if c.isdigit())
    assert len(digits) < 11


def test_non_pan_digit_runs_are_kept() -> None:
    sequence = "49654999999999999999999999999999999999999999999999999999"
    assert redact_text(f"seq {sequence} ts 1325376018") == f"seq {sequence} ts 1325376018"
    assert redact_text("4111111111111112") == "4111111111111112"  # fails Luhn: not a PAN
    # Runs of zeros pass Luhn but are shard ids, not cards (found in stream-writer logs).
    assert redact_text("shardId-000000000000 done") == "shardId-000000000000 done"


def test_authorization_headers_and_bearer_tokens_are_redacted() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtIn0.c2lnbmF0dXJl"
    assert jwt not in redact_text(f"Authorization: Bearer {jwt}")
    assert "hunter2" not in redact_text('{"authorization": "Basic hunter2"}')
    assert jwt not in redact_text(f"token={jwt}")


def test_log_lines_never_carry_a_pan() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("cardstream.test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("record %s failed", {"cc_num": PAN}, extra={"card": PAN})
        try:
            raise ValueError(f"bad card {PAN}")
        except ValueError:
            logger.exception("oops")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert PAN not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["msg"].startswith("record")
    assert "exc" in lines[1]


class _Example(ServiceSettings):
    model_config = {**ServiceSettings.model_config, "env_prefix": "EXAMPLE_"}
    port: int = Field(ge=1, le=65535)


def test_bad_configuration_refuses_to_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "99999999")
    with pytest.raises(SystemExit) as info:
        load_settings(_Example)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "EXAMPLE_PORT" in err
    assert "99999999" not in err


def test_missing_configuration_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EXAMPLE_PORT", raising=False)
    with pytest.raises(SystemExit):
        load_settings(_Example)
    assert "EXAMPLE_PORT: Field required" in capsys.readouterr().err
