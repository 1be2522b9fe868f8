"""Deployment settings of one cardstream environment, read from CDK context.

Everything that differs between a developer account and production (sizes, Multi-AZ, the
image digests CI proved) is a field here, so the stacks themselves hold no environment logic.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from pydantic import ValidationError

from cardstream_infra.service_ports import DASHBOARD_LISTENER_PORT
from cardstream_shared import merchant_registry
from cardstream_shared import resource_names as names
from cardstream_shared.merchant_registry import MerchantEntry

# The service images: one ECR repository each (data stack), run by digest (services stack).
IMAGES: Final = ("ingest-api", "stream-writer", "db-loader", "dashboard")
DIGEST: Final = re.compile(r"sha256:[0-9a-f]{64}")
PLACEHOLDER_DIGEST: Final = "sha256:" + "0" * 64


@dataclass(frozen=True, kw_only=True)
class DeploymentConfig:
    """One environment's knobs; ``cdk.json`` context ``cardstream`` overrides the defaults.

    Attributes:
        environment: name used in tags and resource prefixes (``dev``, ``staging``, ``prod``).
        account: AWS account id; fixed so synthesis never needs a lookup.
        region: AWS region.
        owner: value of the ``owner`` tag.
        cost_center: value of the ``cost-center`` tag.
        stream_mode: ``on_demand`` (Kinesis adds shards as writes grow) or ``provisioned``
            (``shard_count`` shards, fixed).
        shard_count: the stream-writer's task ceiling, one worker per shard at most (more
            would hold no lease): in provisioned mode the shards themselves; in on-demand
            mode the shards the stream opens at the peak the deployment is sized for, twice
            the peak write rate over 1,000 records/s per shard (the capacity model's
            "shards (on-demand)" column, docs/cost.md). A writer holds several leases when
            the stream has more shards than writers.
        stream_retention_hours: how long Kinesis keeps records (24 to 8760).
        db_instance_class: RDS instance class without the ``db.`` prefix.
        db_allocated_storage_gib: initial RDS storage.
        db_max_allocated_storage_gib: ceiling for RDS storage autoscaling.
        db_multi_az: standby in a second availability zone.
        db_max_connections: PostgreSQL ``max_connections`` (set explicitly so the 80 %
            connection alarm has a fixed threshold).
        db_backup_retention_days: automated backup retention.
        backup_retention_days: how long AWS Backup keeps the daily recovery points of the
            database and the lease table (locked in their vault for that long).
        image_digests: digest of each service image in ECR (``sha256:...``), the images CI
            proved; tasks run them by digest, never by tag. Given as a JSON object on the
            command line (infra/scripts/cdk.sh). The default, all zeros, names no image:
            it lets the app synthesize without a build.
        api_rate_limit: the API stage's steady-state requests per second.
        api_burst_limit: the API stage's burst.
        alarm_email: optional address subscribed to the alarm topic.
        github_repository: ``owner/name`` of the GitHub repository whose workflows deploy
            this environment; the CI access stack's roles trust only its OIDC tokens.
        landing_retention_days: days a landed object is kept before expiry.
        log_retention_days: CloudWatch Logs retention (PCI DSS 10.5.1 asks for a year).
        ingest_max_tasks: ingest-api autoscaling ceiling.
        loader_max_tasks: db-loader autoscaling ceiling.
        loader_backlog_per_task: SQS messages per db-loader task the scaling tracks.
        api_domain_name: the merchant API's custom domain (its only address).
        dashboard_domain_name: the dashboard's host name on the operators' network.
        certificate_arn: ACM certificate in ``region`` covering both domain names; the API's
            custom domain and the internal load balancer's HTTPS listeners present it.
        operator_cidrs: networks operators reach the dashboard from (the bank's network,
            connected to the VPC); empty: nobody can reach it.
        max_body_bytes: the largest request body the ingest-api accepts; the web
            application firewall refuses larger ones before they reach the VPC.
        waf_requests_per_source_per_5_minutes: requests one client address may make in
            five minutes before the firewall answers 429.
        merchants: each merchant's name and rate limit (a JSON list of objects with
            ``name``, ``records_per_second`` and ``burst``, the registry's
            :class:`~cardstream_shared.merchant_registry.MerchantEntry`); each gets its own
            Cognito app client and registry entry.
    """

    environment: str = "dev"
    account: str = "111111111111"
    region: str = "eu-west-1"
    owner: str = "data-platform"
    cost_center: str = "cardstream"
    stream_mode: str = "on_demand"
    shard_count: int = 2
    stream_retention_hours: int = 48
    db_instance_class: str = "t4g.medium"
    db_allocated_storage_gib: int = 100
    db_max_allocated_storage_gib: int = 500
    db_multi_az: bool = True
    db_max_connections: int = 200
    db_backup_retention_days: int = 14
    backup_retention_days: int = 35
    image_digests: Mapping[str, str] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(IMAGES, PLACEHOLDER_DIGEST)
    )
    api_rate_limit: int = 500
    api_burst_limit: int = 1000
    alarm_email: str | None = None
    github_repository: str = ""
    landing_retention_days: int = 400
    log_retention_days: int = 365
    ingest_max_tasks: int = 10
    loader_max_tasks: int = 8
    loader_backlog_per_task: int = 20
    api_domain_name: str = ""
    dashboard_domain_name: str = ""
    certificate_arn: str = ""
    operator_cidrs: tuple[str, ...] = ()
    max_body_bytes: int = 8 * 1024 * 1024
    waf_requests_per_source_per_5_minutes: int = 30_000
    merchants: tuple[MerchantEntry, ...] = ()

    def __post_init__(self) -> None:
        if self.stream_mode not in ("on_demand", "provisioned"):
            raise ValueError("stream_mode must be on_demand or provisioned")
        if not 1 <= self.shard_count <= 500:
            raise ValueError("shard_count must be between 1 and 500")
        if not 24 <= self.stream_retention_hours <= 8760:
            raise ValueError("stream_retention_hours must be between 24 and 8760")
        if self.db_max_allocated_storage_gib < self.db_allocated_storage_gib:
            raise ValueError("db_max_allocated_storage_gib is below db_allocated_storage_gib")
        if not 1 <= self.backup_retention_days <= 36500:
            raise ValueError("backup_retention_days must be between 1 and 36500")
        if set(self.image_digests) != set(IMAGES):
            raise ValueError(f"image_digests must name exactly {', '.join(IMAGES)}")
        for image, digest in self.image_digests.items():
            if not DIGEST.fullmatch(digest):
                raise ValueError(f"image_digests: {image} is not a sha256:<64 hex> digest")
        for name in ("api_domain_name", "dashboard_domain_name"):
            value = getattr(self, name)
            if value and "." not in value:
                raise ValueError(f"{name} must be a DNS name, e.g. api.cardstream.example.com")
        if self.certificate_arn and (
            not self.certificate_arn.startswith("arn:") or ":acm:" not in self.certificate_arn
        ):
            raise ValueError("certificate_arn must be the ARN of an ACM certificate")
        for cidr in self.operator_cidrs:
            try:
                ipaddress.IPv4Network(cidr)
            except ValueError as error:
                raise ValueError(f"operator_cidrs: {cidr!r} is not an IPv4 network") from error
        # GitHub's owner and repository names: letters, digits, '-', '_' and '.'.
        repository = re.compile(r"[A-Za-z0-9-]+/[A-Za-z0-9_.-]+")
        if self.github_repository and not repository.fullmatch(self.github_repository):
            raise ValueError("github_repository must be owner/name, e.g. example-org/cardstream")
        if not 1024 <= self.max_body_bytes <= 10 * 1024 * 1024:
            # API Gateway refuses payloads over 10 MB whatever the service accepts.
            raise ValueError("max_body_bytes must be between 1024 and 10485760")
        if not 10 <= self.waf_requests_per_source_per_5_minutes <= 2_000_000_000:
            raise ValueError("waf_requests_per_source_per_5_minutes must be at least 10")
        merchant_names = [merchant.name for merchant in self.merchants]
        if len(set(merchant_names)) != len(merchant_names):
            raise ValueError("merchants: each name once")

    @property
    def dashboard_url(self) -> str:
        """The dashboard's address on the operators' network (its own ALB listener)."""
        return f"https://{self.dashboard_domain_name}:{DASHBOARD_LISTENER_PORT}"

    def require_deployment_settings(self) -> None:
        """Refuse to build stacks without what every environment names: its domains and
        certificate, and the repository CI deploys from (the capacity model reads a config
        without them)."""
        for name in (
            "api_domain_name",
            "dashboard_domain_name",
            "certificate_arn",
            "github_repository",
        ):
            if not getattr(self, name):
                raise ValueError(f"{name} is not set (cdk.json or -c cardstream.{name}=...)")

    def scoped(self, name: str) -> str:
        """A name of ``resource_names`` for this environment, so that two environments can
        share an account: ``cardstream-transactions`` -> ``cardstream-dev-transactions``,
        ``cardstream/db/api`` -> ``cardstream-dev/db/api``."""
        if not name.startswith(("cardstream-", "cardstream/")):
            raise ValueError(f"{name!r} is not a cardstream resource name")
        return self.prefix + name.removeprefix("cardstream")

    @property
    def merchant_registry_path(self) -> str:
        """The merchant registry's parameter path, e.g. ``/cardstream-dev/merchants``."""
        return "/" + self.scoped(merchant_registry.DEFAULT_PATH.removeprefix("/"))

    @property
    def prefix(self) -> str:
        """Stack-name prefix, e.g. ``cardstream-dev``."""
        return f"cardstream-{self.environment}"

    @property
    def landing_bucket_name(self) -> str:
        """Landing bucket: S3 names are global, so account and region make it unique."""
        return f"{names.LANDING_BUCKET}-{self.environment}-{self.account}-{self.region}"

    @property
    def access_log_bucket_name(self) -> str:
        """Access-log bucket, unique the same way."""
        return f"{names.ACCESS_LOG_BUCKET}-{self.environment}-{self.account}-{self.region}"

    @property
    def audit_log_bucket_name(self) -> str:
        """Bucket of the load balancer's access logs (Object Lock), unique the same way."""
        return f"cardstream-audit-logs-{self.environment}-{self.account}-{self.region}"

    @property
    def jwks_bucket_name(self) -> str:
        """Bucket of the JWKS copy the services verify tokens with, unique the same way."""
        return f"cardstream-jwks-{self.environment}-{self.account}-{self.region}"

    @classmethod
    def from_node(cls, node: Any) -> DeploymentConfig:
        """From a construct node's context: the ``cardstream`` mapping (infra/cdk.json),
        overridden field by field with ``-c cardstream.<field>=<value>`` (what CI passes)."""
        values = dict(node.try_get_context("cardstream") or {})
        for field in fields(cls):
            override = node.try_get_context(f"cardstream.{field.name}")
            if override is not None:
                values[field.name] = override
        return cls.from_context(values)

    @classmethod
    def from_context(cls, values: dict[str, Any] | None) -> DeploymentConfig:
        """Build from the ``cardstream`` context mapping; unknown keys are an error."""
        values = dict(values or {})
        known = {field.name: field for field in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown cardstream context keys: {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            # `cdk -c cardstream.x=...` style overrides arrive as strings.
            default = known[name].default
            if name == "merchants":
                entries = json.loads(value) if isinstance(value, str) else value
                try:
                    converted[name] = tuple(MerchantEntry.model_validate(e) for e in entries)
                except ValidationError as error:
                    raise ValueError(f"merchants: {error}") from None
            elif isinstance(default, tuple):
                parts = value.split(",") if isinstance(value, str) else value
                converted[name] = tuple(str(part).strip() for part in parts if str(part).strip())
            elif isinstance(default, bool) and isinstance(value, str):
                converted[name] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int) and isinstance(value, str):
                converted[name] = int(value)
            elif name == "image_digests" and isinstance(value, str):
                converted[name] = json.loads(value)
            else:
                converted[name] = value
        return cls(**converted)
