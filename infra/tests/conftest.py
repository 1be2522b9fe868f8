"""Synthesize the CDK app once per session, offline, with cdk-nag's packs attached.

Account, region and availability zones are fixed (infra/cdk.json and the configuration's
zones), so synthesis never calls AWS. A cdk-nag finding without an acknowledgement
makes ``app.synth()`` raise, which fails every test that uses these fixtures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# jsii prints a banner on stderr for Node 20 (end of life); the version is known here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

INFRA_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = INFRA_DIR.parent


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: its config, the stacks' templates, and where they were written."""

    config: Any
    stacks: Any
    templates: dict[str, dict[str, Any]]
    outdir: Path

    def template(self, kind: str) -> dict[str, Any]:
        """Template of the stack named ``<prefix>-<kind>`` (``network``, ``data`` ...)."""
        return self.templates[f"{self.config.prefix}-{kind}"]

    def resources(self, resource_type: str, kind: str | None = None) -> dict[str, Any]:
        """Resources of one type, in one stack or in all of them (logical id -> resource)."""
        found: dict[str, Any] = {}
        for name, template in self.templates.items():
            if kind is not None and name != f"{self.config.prefix}-{kind}":
                continue
            for logical_id, resource in template.get("Resources", {}).items():
                if resource["Type"] == resource_type:
                    found[f"{name}/{logical_id}"] = resource
        return found


def cdk_context() -> dict[str, Any]:
    """The context of infra/cdk.json (feature flags and the cardstream settings)."""
    context: dict[str, Any] = json.loads((INFRA_DIR / "cdk.json").read_text())["context"]
    return context


def synthesize(overrides: dict[str, Any], outdir: Path) -> Synthesized:
    """Build and synthesize the app for cdk.json's settings with ``overrides``."""
    from aws_cdk import App

    from cardstream_infra.config import DeploymentConfig
    from cardstream_infra.deployment import build

    context = cdk_context()
    config = DeploymentConfig.from_context({**context.pop("cardstream"), **overrides})
    app = App(context=context, outdir=str(outdir))
    stacks = build(app, config)
    assembly = app.synth()
    templates = {stack.stack_name: dict(stack.template) for stack in assembly.stacks}
    return Synthesized(config, stacks, templates, outdir)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """The app as ``cdk synth`` builds it from infra/cdk.json (the dev environment)."""
    return synthesize({}, tmp_path_factory.mktemp("cdk-dev"))


@pytest.fixture(scope="session")
def synth_prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    """A production-like variant: Multi-AZ, a provisioned stream of 4 shards, a different
    account, the images by real-looking digests."""
    return synthesize(
        {
            "environment": "prod",
            "account": "222222222222",
            "db_multi_az": True,
            "stream_mode": "provisioned",
            "shard_count": 4,
            "alarm_email": "oncall@example.com",
            # What infra/scripts/cdk.sh passes: the digests CI proved, one per image.
            "image_digests": {
                image: f"sha256:{index:064x}"
                for index, image in enumerate(
                    ("ingest-api", "stream-writer", "db-loader", "dashboard"), start=1
                )
            },
        },
        tmp_path_factory.mktemp("cdk-prod"),
    )


# Service directory -> (distribution name, import name) of every workspace service.
SERVICES: dict[str, tuple[str, str]] = {
    "ingest-api": ("cardstream-ingest-api", "ingest_api"),
    "stream-writer": ("cardstream-stream-writer", "stream_writer"),
    "db-loader": ("cardstream-db-loader", "db_loader"),
    "dashboard": ("cardstream-dashboard", "dashboard"),
}


@dataclass(frozen=True)
class ServiceConfig:
    """What a service reads from its environment, from its pydantic-settings class."""

    cls: Any
    prefix: str
    fields: dict[str, Any]

    def load(self, environment: dict[str, str]) -> Any:
        """The settings the service would build from exactly ``environment``."""
        saved = dict(os.environ)
        try:
            for key in [k for k in os.environ if k.startswith(self.prefix)]:
                del os.environ[key]
            os.environ.update(environment)
            return self.cls()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def variable(self, field: str) -> str:
        """Environment variable of ``field``."""
        return f"{self.prefix}{field}".upper()

    @property
    def variables(self) -> set[str]:
        """Every variable the class reads."""
        return {self.variable(name) for name in self.fields}

    @property
    def required(self) -> set[str]:
        """Variables without a default: the service refuses to start without them."""
        return {self.variable(name) for name, info in self.fields.items() if info.is_required()}

    def default(self, field: str) -> Any:
        """Default value of ``field``."""
        return self.fields[field].default


@pytest.fixture(scope="session")
def service_configs() -> dict[str, ServiceConfig]:
    """Each service's settings class, found in ``<import name>.settings``."""
    import importlib

    from cardstream_shared.settings import ServiceSettings

    configs: dict[str, ServiceConfig] = {}
    for service, (_, module_name) in SERVICES.items():
        module = importlib.import_module(f"{module_name}.settings")
        classes = [
            value
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, ServiceSettings)
            and value is not ServiceSettings
            and value.__module__ == module.__name__
        ]
        assert len(classes) == 1, f"{module.__name__}: {classes}"
        cls = classes[0]
        configs[service] = ServiceConfig(
            cls=cls,
            prefix=str(cls.model_config.get("env_prefix", "")),
            fields=dict(cls.model_fields),
        )
    return configs
