"""AWS Backup of the stateful stores: a daily backup of the database and the lease table into
an encrypted, locked vault, beside the stores' own point-in-time recovery.

RDS automated backups and DynamoDB point-in-time recovery live and die with their resource
and its account permissions; a vault with a lock keeps recovery points that nobody in the
account can delete before their retention ends (NIST 800-53 CP-9, system backup).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_backup as backup
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from constructs import Construct


@dataclass(frozen=True, kw_only=True)
class BackupsProps:
    """Props of :class:`Backups`.

    Attributes:
        name: vault and plan name (carries the environment).
        resources: what the plan backs up.
        retention_days: how long a recovery point is kept (also the vault lock's minimum).
    """

    name: str
    resources: Sequence[backup.BackupResource]
    retention_days: int


class Backups(Construct):
    """Vault (customer key, governance-mode lock), daily plan, selection."""

    def __init__(self, scope: Construct, construct_id: str, *, props: BackupsProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="cardstream backup vault encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vault = backup.BackupVault(
            self,
            "Vault",
            backup_vault_name=props.name,
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
            # Governance mode: no recovery point is deleted before its retention ends, except
            # by a principal explicitly allowed to bypass the lock.
            lock_configuration=backup.LockConfiguration(
                min_retention=Duration.days(props.retention_days)
            ),
        )
        self.plan = backup.BackupPlan(
            self,
            "Plan",
            backup_plan_name=props.name,
            backup_vault=self.vault,
            backup_plan_rules=[
                backup.BackupPlanRule(
                    rule_name="Daily",
                    # After the night's batch window, before the business day in Europe.
                    schedule_expression=events.Schedule.cron(hour="3", minute="0"),
                    start_window=Duration.hours(1),
                    completion_window=Duration.hours(4),
                    delete_after=Duration.days(props.retention_days),
                )
            ],
        )
        self.selection = self.plan.add_selection(
            "Stores", resources=list(props.resources), allow_restores=False
        )
