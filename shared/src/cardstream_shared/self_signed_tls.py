"""A TLS certificate made at start-up, for a web service behind a load balancer.

In AWS the ALB forwards to each task over HTTPS, so the last hop inside the VPC is
encrypted too. An ALB does not verify its targets' certificates (Elastic Load Balancing
documentation, "Target groups for your Application Load Balancers"), so each task makes its
own key and self-signed certificate when it starts: no private key is shipped in an image
or kept in a secret, and a key lives exactly as long as its task.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# A task runs for days at most (every deployment replaces it); the margin keeps a long-lived
# one from ever presenting an expired certificate.
VALIDITY = dt.timedelta(days=397)


@dataclass(frozen=True)
class CertificateFiles:
    """Where the PEM certificate and its private key were written."""

    certfile: Path
    keyfile: Path


def write_self_signed_certificate(directory: Path | None = None) -> CertificateFiles:
    """Make an ECDSA P-256 key and a certificate for this host, in a new private directory.

    The directory is created under ``directory`` (default: the system's temporary
    directory) readable by this user only; the key file is written with mode 0600.
    """
    folder = Path(tempfile.mkdtemp(prefix="tls-", dir=directory))
    hostname = socket.gethostname()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    keyfile = folder / "key.pem"
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    certfile = folder / "cert.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return CertificateFiles(certfile=certfile, keyfile=keyfile)
