"""The certificate a web service makes at start-up to serve HTTPS behind the ALB."""

from __future__ import annotations

import datetime as dt
import socket
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardstream_shared.self_signed_tls import write_self_signed_certificate

pytestmark = pytest.mark.unit


def test_key_and_certificate_are_private_matching_and_current(tmp_path: Path) -> None:
    files = write_self_signed_certificate(tmp_path)
    assert stat.S_IMODE(files.keyfile.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(files.keyfile.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(files.keyfile.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    certificate = x509.load_pem_x509_certificate(files.certfile.read_bytes())
    assert certificate.public_key() == key.public_key()
    now = dt.datetime.now(dt.UTC)
    assert certificate.not_valid_before_utc <= now < certificate.not_valid_after_utc
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [socket.gethostname()]


def test_every_start_makes_a_new_key(tmp_path: Path) -> None:
    first = write_self_signed_certificate(tmp_path)
    second = write_self_signed_certificate(tmp_path)
    assert first.keyfile.parent != second.keyfile.parent
    assert first.keyfile.read_bytes() != second.keyfile.read_bytes()
