"""What `cardstream up` plans to start, read without starting it."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cardstream.local.stack import LocalStack, _plan_services
from dashboard.auth import REQUIRED_SCOPES

pytestmark = pytest.mark.unit


def _plan(tmp_path: Path) -> dict[str, Any]:
    args = argparse.Namespace(apis=0, api_port=0, writers=0, loaders=0, dashboard_port=0)
    resources = SimpleNamespace(
        queue_url="http://127.0.0.1:1/123456789012/q",
        dlq_url="http://127.0.0.1:1/123456789012/dlq",
        stream_name="stream",
        landing_bucket="bucket",
    )
    made: Any = SimpleNamespace(resources=resources)
    return _plan_services(args, LocalStack(state_dir=tmp_path), "http://127.0.0.1:1", made)


def test_the_local_sign_in_grants_every_scope_the_dashboard_requires(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    (signin,) = plan["sign-in"]
    granted = {
        value
        for flag, value in zip(signin.args, signin.args[1:], strict=False)
        if flag == "--scope"
    }
    (dashboard,) = plan["dashboard"]
    asked = set(dashboard.env["DASHBOARD_SIGNIN_SCOPES"].split())
    # The one link `cardstream up` prints signs the developer in as an operator.
    assert set(REQUIRED_SCOPES) <= asked <= granted
