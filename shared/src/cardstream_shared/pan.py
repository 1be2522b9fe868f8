"""Keyed tokenization of primary account numbers (PCI DSS v4.0.1, 3.4 and 3.5).

A card number leaves ingest-api only as ``HMAC-SHA256(key, PAN)`` plus its last four digits
and the version of the key that made the token. A plain hash of a PAN no longer counts as
unreadable (3.5.1.1) because the PAN space is small enough to enumerate; a keyed hash does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Final

import msgspec

PAN_MIN_DIGITS: Final = 11
PAN_MAX_DIGITS: Final = 19
_DIGITS = re.compile(r"\d+")
_MIN_KEY_BYTES: Final = 32


# Luhn doubles every second digit from the right; these are the digit sums of the doubles.
_DOUBLED_DIGIT_SUM = bytes.maketrans(b"0123456789", b"0246813579")


def luhn_valid(digits: str) -> bool:
    """Return True when ``digits`` (a string of digits) passes the Luhn check."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    raw = digits.encode("ascii")
    # Sums of ASCII codes; each digit carries an offset of 48 ("0"), removed at the end.
    total = sum(raw[-1::-2]) + sum(raw[-2::-2].translate(_DOUBLED_DIGIT_SUM)) - 48 * len(raw)
    return total % 10 == 0


def mask_last4(last4: str) -> str:
    """Display form of a card: at most the last four digits are shown (PCI DSS 3.4.1)."""
    return f"****{last4}"


# A msgspec struct: ingest-api makes one per record, and a frozen dataclass's __init__ cost
# several times as much. Strings only: it cannot be part of a cycle (gc=False).
class CardToken(msgspec.Struct, frozen=True, gc=False):
    """What replaces a PAN everywhere after the edge."""

    token: str
    last4: str
    key_version: str


class PanKeyring:
    """The versioned HMAC keys; tokens are always made with the current version.

    The secret may hold older versions (each is checked for length); every token names the
    version that made it, so tokens from before a rotation are told apart.
    """

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError(f"current key version {current!r} is not in the keyring")
        for version, key in keys.items():
            if len(key) < _MIN_KEY_BYTES:
                raise ValueError(
                    f"PAN key version {version!r} is {len(key)} bytes; at least "
                    f"{_MIN_KEY_BYTES} are required"
                )
        self.current = current
        self._current_pads = _hmac_pads(keys[current])

    @classmethod
    def from_secret_string(cls, secret: str) -> PanKeyring:
        """Parse the Secrets Manager value ``{"current": "v1", "keys": {"v1": "<base64>"}}``."""
        try:
            data = json.loads(secret)
            keys = {str(v): base64.b64decode(k, validate=True) for v, k in data["keys"].items()}
            return cls(keys, str(data["current"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Never include the secret itself in the message.
            raise ValueError(f"PAN key secret is malformed: {type(exc).__name__}") from None

    @staticmethod
    def new_secret_string(version: str = "v1", key: bytes | None = None) -> str:
        """A fresh secret value with one random key (for the local stack and tests)."""
        import secrets

        material = key if key is not None else secrets.token_bytes(32)
        return json.dumps(
            {"current": version, "keys": {version: base64.b64encode(material).decode()}}
        )

    def tokenize(self, pan: str) -> CardToken:
        """Tokenize a PAN given as a string of digits with the current key."""
        inner, outer = self._current_pads
        return CardToken(
            token=_hmac_hex(inner, outer, pan.encode("ascii")),
            last4=pan[-4:],
            key_version=self.current,
        )


_SHA256_BLOCK_BYTES: Final = 64
_IPAD: Final = bytes(byte ^ 0x36 for byte in range(256))
_OPAD: Final = bytes(byte ^ 0x5C for byte in range(256))


def _hmac_pads(key: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states after the padded key blocks of HMAC (RFC 2104, section 2).

    Both blocks depend on the key alone, so they are hashed once per key instead of once
    per PAN; copying a state is far cheaper (figures in docs/benchmarks.md).
    """
    if len(key) > _SHA256_BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    block = key.ljust(_SHA256_BLOCK_BYTES, b"\0")
    return hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD))


def _hmac_hex(inner: hashlib._Hash, outer: hashlib._Hash, message: bytes) -> str:
    """HMAC-SHA256 of ``message`` from the states of :func:`_hmac_pads`, in hexadecimal."""
    inner_hash = inner.copy()
    inner_hash.update(message)
    outer_hash = outer.copy()
    outer_hash.update(inner_hash.digest())
    return outer_hash.hexdigest()
