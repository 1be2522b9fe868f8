"""Reading ``.cardstream/stack.json``, which ``cardstream up`` writes once the stack is ready.

The CLI helpers (replay, token, status) take their defaults from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

from cardstream_shared.settings import ServiceSettings

STACK_FILE: Final = "stack.json"


class StackInfoError(Exception):
    """stack.json is missing, unreadable, or lacks a key the command needs."""


def load_stack_info(state_dir: Path, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The parsed stack.json under ``state_dir``; ``required`` keys must be present."""
    path = state_dir / STACK_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackInfoError(f"{path} does not exist (is `cardstream up` running?)") from None
    except (OSError, ValueError) as exc:
        raise StackInfoError(f"{path} cannot be read: {exc}") from None
    if not isinstance(info, dict):
        raise StackInfoError(f"{path} is not a JSON object")
    missing = [key for key in required if key not in info]
    if missing:
        raise StackInfoError(f"{path} lacks {', '.join(missing)}")
    return info


# What ``cardstream up`` gives its own processes: moto accepts any credentials, and these
# let a developer's shell without AWS keys talk to the local stack.
LOCAL_AWS_CREDENTIALS: Final = {
    "AWS_ACCESS_KEY_ID": "cardstream-local",
    "AWS_SECRET_ACCESS_KEY": "cardstream-local",
}


def use_local_aws_credentials() -> None:
    """Fill in the local stack's fake AWS credentials where the environment has none."""
    for name, value in LOCAL_AWS_CREDENTIALS.items():
        os.environ.setdefault(name, value)


def local_aws_settings(info: dict[str, Any]) -> ServiceSettings:
    """AWS client settings for the local stack described by ``info`` (the parsed
    stack.json), its fake credentials filled in."""
    use_local_aws_credentials()
    return ServiceSettings(
        environment="local",
        aws_region=str(info.get("aws_region") or "us-east-1"),
        aws_endpoint_url=str(info["aws_endpoint_url"]),
        aws_max_attempts=2,
    )
