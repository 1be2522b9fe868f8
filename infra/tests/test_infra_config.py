"""DeploymentConfig: context values from cdk.json and from `-c cardstream.<field>=...`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App

from cardstream_infra.config import IMAGES, DeploymentConfig
from cardstream_shared.merchant_registry import MerchantEntry

pytestmark = pytest.mark.unit

DIGESTS = {image: f"sha256:{index:064x}" for index, image in enumerate(IMAGES, start=1)}
# What every environment must name: its domains and their certificate, and its repository.
REQUIRED = {
    "api_domain_name": "api.example.com",
    "dashboard_domain_name": "dashboard.example.com",
    "certificate_arn": "arn:aws:acm:eu-west-1:111111111111:certificate/abc",
    "github_repository": "example-org/cardstream",
}


def test_command_line_strings_override_cdk_json_fields() -> None:
    app = App(
        context={
            "cardstream": {
                "environment": "dev",
                "shard_count": 2,
                "db_multi_az": False,
                **REQUIRED,
            },
            # What `cdk deploy -c cardstream.x=y` passes: strings.
            "cardstream.shard_count": "6",
            "cardstream.db_multi_az": "true",
            "cardstream.image_digests": json.dumps(DIGESTS),
            "cardstream.operator_cidrs": "10.1.0.0/16, 192.168.4.0/24",
            "cardstream.merchants": '[{"name": "acme", "records_per_second": 5, "burst": 50}]',
        }
    )
    config = DeploymentConfig.from_node(app.node)
    assert config.shard_count == 6
    assert config.db_multi_az is True
    assert config.image_digests == DIGESTS
    assert config.environment == "dev"
    assert config.operator_cidrs == ("10.1.0.0/16", "192.168.4.0/24")
    assert config.merchants == (MerchantEntry(name="acme", records_per_second=5, burst=50),)


@pytest.mark.parametrize(
    "digests",
    [
        {**DIGESTS, "ingest-api": "latest"},
        {**DIGESTS, "ingest-api": "sha256:abc"},
        {k: v for k, v in DIGESTS.items() if k != "dashboard"},
        {**DIGESTS, "cli": DIGESTS["dashboard"]},
    ],
)
def test_images_are_named_by_digest_only_and_all_of_them(digests: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="image_digests"):
        DeploymentConfig.from_context({**REQUIRED, "image_digests": json.dumps(digests)})


def test_unknown_context_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="shardcount"):
        DeploymentConfig.from_context({**REQUIRED, "shardcount": 3})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shard_count", 0),
        ("stream_retention_hours", 12),
        ("db_max_allocated_storage_gib", 10),
        ("api_domain_name", "localhost"),
        ("dashboard_domain_name", "localhost"),
        ("certificate_arn", "my-certificate"),
        ("github_repository", "cardstream"),
        ("github_repository", "example-org/cardstream:ref:refs/heads/*"),
        ("operator_cidrs", "10.0.0.0/33"),
        ("max_body_bytes", 11 * 1024 * 1024),
        ("waf_requests_per_source_per_5_minutes", 0),
        ("merchants", '[{"name": "Acme Shop", "records_per_second": 10, "burst": 10}]'),
        ("merchants", '[{"name": "acme", "records_per_second": 0, "burst": 10}]'),
        ("merchants", '[{"name": "acme", "rate": 10}]'),
        (
            "merchants",
            '[{"name": "acme", "records_per_second": 1, "burst": 1},'
            ' {"name": "acme", "records_per_second": 2, "burst": 2}]',
        ),
    ],
)
def test_impossible_values_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        DeploymentConfig.from_context({**REQUIRED, field: value})


@pytest.mark.parametrize("field", sorted(REQUIRED))
def test_stacks_are_not_built_without_the_domains_certificate_and_repository(field: str) -> None:
    from cardstream_infra.deployment import build

    config = DeploymentConfig.from_context({**REQUIRED, field: ""})
    with pytest.raises(ValueError, match=field):
        build(App(), config, nag=False)


def test_bucket_names_are_unique_per_environment_account_and_region() -> None:
    a = DeploymentConfig(environment="dev", account="111111111111", **REQUIRED)
    b = DeploymentConfig(environment="prod", account="111111111111", **REQUIRED)
    c = DeploymentConfig(environment="dev", account="222222222222", **REQUIRED)
    names = {cfg.landing_bucket_name for cfg in (a, b, c)}
    assert len(names) == 3
    for cfg in (a, b, c):
        assert len(cfg.landing_bucket_name) <= 63
        assert len(cfg.access_log_bucket_name) <= 63


def test_the_documented_synth_runs_without_aws_credentials(tmp_path: Path) -> None:
    # Exactly what `cdk synth -c cardstream.account=... -c cardstream.region=...` (docs/deploy.md,
    # section 1) does: the CLI runs cdk.json's app with the merged context in CDK_CONTEXT_JSON
    # and reads the cloud assembly; any context the app could not resolve offline is listed
    # there as "missing", and the CLI would then need AWS credentials to look it up.
    infra = Path(__file__).resolve().parents[1]
    settings = json.loads((infra / "cdk.json").read_text())
    context = {
        **settings["context"],
        "cardstream.account": "123456789012",
        "cardstream.region": "eu-west-1",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CDK_"))}
    env.update(
        {
            "CDK_CONTEXT_JSON": json.dumps(context),
            "CDK_OUTDIR": str(tmp_path),
            "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    app = settings["app"].split()
    result = subprocess.run(
        [sys.executable, *app[1:]], cwd=infra, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest.get("missing", []) == []
    assert app[0].endswith("python")
    stacks = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert {stack["environment"] for stack in stacks} == {"aws://123456789012/eu-west-1"}
