"""Secrets that are not database credentials: the PAN tokenization keyring."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct


class AppSecrets(Construct):
    """The secrets key (shared with the database secrets) and the PAN keyring secret.

    The keyring's value has a JSON shape CloudFormation cannot generate
    (``{"current": "v1", "keys": {"v1": "<base64 of 32 random bytes>"}}``), so the secret is
    created with a random placeholder the ingest-api refuses to parse, and docs/deploy.md
    has the one command that stores a real keyring. The service fails closed until then.
    """

    def __init__(self, scope: Construct, construct_id: str, *, pan_key_secret_name: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="cardstream secrets encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.pan_key = secretsmanager.Secret(
            self,
            "PanKey",
            secret_name=pan_key_secret_name,
            description="HMAC keyring that tokenizes card numbers (PCI DSS 3.5.1.1)",
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
        )
