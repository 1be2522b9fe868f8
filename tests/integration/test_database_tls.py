"""Database TLS with verify-full: the service connects only to the server its CA vouches for.

The embedded PostgreSQL has no TLS, so a relay on a loopback port answers PostgreSQL's
SSLRequest the way RDS does, presents a certificate for ``localhost`` issued by a test CA,
and relays the decrypted session to the real server. The services' own code connects:
``cardstream_shared.database`` resolves the URL from the settings and opens the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cardstream_shared.database import create_pool, database_url
from db_loader.settings import LoaderSettings

pytestmark = pytest.mark.integration

# PostgreSQL's SSLRequest: length 8, then the code 1234 5679.
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@dataclass(frozen=True)
class Authority:
    """A CA's certificate file and what it needs to issue a server certificate."""

    certfile: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _authority(directory: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    certfile = directory / f"{name}.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Authority(certfile, certificate, key)


def _server_context(directory: Path, issuer: Authority, hostname: str) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        .sign(issuer.key, hashes.SHA256())
    )
    certfile, keyfile = directory / "server.pem", directory / "server.key"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def tls_relay(context: ssl.SSLContext, upstream: str) -> AsyncIterator[int]:
    """A loopback port that speaks TLS as RDS does and relays to ``upstream`` in clear."""
    target = urlsplit(upstream)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(8) != SSL_REQUEST:
                writer.close()
                return
            writer.write(b"S")
            await writer.drain()
            await writer.start_tls(context)
        except (OSError, asyncio.IncompleteReadError):
            # The client refused our certificate.
            writer.close()
            return
        server_reader, server_writer = await asyncio.open_connection(target.hostname, target.port)
        await asyncio.gather(_pipe(reader, server_writer), _pipe(server_reader, writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def _settings(url: str, port: int, host: str, sslrootcert: Path) -> LoaderSettings:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@{host}:{port}"
    return LoaderSettings(
        environment="test",
        queue_url="unused",
        database_url=urlunsplit(parts._replace(netloc=netloc)),
        database_sslmode="verify-full",
        database_sslrootcert=sslrootcert,
    )


async def _current_user(settings: LoaderSettings) -> str:
    pool = await create_pool(
        await database_url(settings),
        application_name="tls-test",
        min_size=1,
        max_size=1,
        statement_timeout_s=5,
        connect_timeout_s=10,
    )
    try:
        return str(await pool.fetchval("SELECT current_user"))
    finally:
        await pool.close()


async def test_verify_full_connects_only_to_the_server_the_ca_names(
    pg_admin_dsn: str, tmp_path: Path
) -> None:
    ours = _authority(tmp_path, "ours")
    rogue = _authority(tmp_path, "rogue")
    context = _server_context(tmp_path, ours, "localhost")
    async with tls_relay(context, pg_admin_dsn) as port:
        # The CA that issued the server's certificate, and the name it was issued for.
        assert await _current_user(_settings(pg_admin_dsn, port, "localhost", ours.certfile))
        # Another CA: the server is not the one we trust.
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            await _current_user(_settings(pg_admin_dsn, port, "localhost", rogue.certfile))
        # The right CA, but another name than the certificate's.
        with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
            await _current_user(_settings(pg_admin_dsn, port, "127.0.0.1", ours.certfile))
