"""Template assertions on the stateful resources: encryption, public access, redrive."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cardstream_infra.components.registry import COMMIT_TAG_PREFIX, KEPT_COMMIT_IMAGES
from cardstream_shared import resource_names as names

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]


def _one(found: dict[str, Any]) -> dict[str, Any]:
    assert len(found) == 1, sorted(found)
    return next(iter(found.values()))["Properties"]


def _by_name(synth: Any, resource_type: str, key: str, value: str) -> dict[str, Any]:
    return _one(
        {
            logical_id: resource
            for logical_id, resource in synth.resources(resource_type).items()
            if resource["Properties"].get(key) == value
        }
    )


def test_stream_is_kms_encrypted_on_demand_with_configured_retention(synth: Any) -> None:
    stream = _by_name(synth, "AWS::Kinesis::Stream", "Name", synth.config.scoped(names.STREAM_NAME))
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert "Fn::GetAtt" in stream["StreamEncryption"]["KeyId"]  # our key, not aws/kinesis
    # Capacity follows the load: Kinesis adds shards, none are fixed here.
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in stream
    assert stream["RetentionPeriodHours"] == synth.config.stream_retention_hours


def test_a_provisioned_stream_has_the_configured_shards(synth_prod: Any) -> None:
    stream = _by_name(
        synth_prod, "AWS::Kinesis::Stream", "Name", synth_prod.config.scoped(names.STREAM_NAME)
    )
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert stream["ShardCount"] == 4


def test_landing_bucket_is_locked_down(synth: Any) -> None:
    bucket = _by_name(synth, "AWS::S3::Bucket", "BucketName", synth.config.landing_bucket_name)
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert "KMSMasterKeyID" in rule["ServerSideEncryptionByDefault"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["LoggingConfiguration"]["LogFilePrefix"] == "landing/"
    lifecycle = bucket["LifecycleConfiguration"]["Rules"][0]
    assert lifecycle["ExpirationInDays"] == synth.config.landing_retention_days
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30
    assert lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == 7


def test_every_bucket_blocks_public_access_encrypts_and_denies_plain_http(synth: Any) -> None:
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == 4  # landing, access logs, audit logs, JWKS copy
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    policies = synth.resources("AWS::S3::BucketPolicy")
    assert len(policies) == 4
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny"
            and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )


def test_raw_prefix_notifies_the_queue(synth: Any) -> None:
    notification = _one(synth.resources("Custom::S3BucketNotifications", "data"))
    config = notification["NotificationConfiguration"]["QueueConfigurations"]
    assert len(config) == 1
    assert config[0]["Events"] == ["s3:ObjectCreated:*"]
    assert config[0]["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": names.RAW_PREFIX}
    ]
    assert config[0]["QueueArn"]["Fn::GetAtt"][0].startswith("LandingLanded")


def test_queue_redrives_to_dlq_after_max_receive_count(synth: Any) -> None:
    queue = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.config.scoped(names.LANDED_QUEUE))
    dlq = _by_name(synth, "AWS::SQS::Queue", "QueueName", synth.config.scoped(names.LANDED_DLQ))
    assert queue["RedrivePolicy"]["maxReceiveCount"] == names.MAX_RECEIVE_COUNT
    assert queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0].startswith(
        "LandingDeadLetters"
    )
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]


def test_every_queue_and_topic_is_kms_encrypted(synth: Any) -> None:
    queues = synth.resources("AWS::SQS::Queue")
    assert len(queues) == 2
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    topics = synth.resources("AWS::SNS::Topic")
    assert topics
    for topic in topics.values():
        assert "KmsMasterKeyId" in topic["Properties"]


def test_queue_policies_require_tls(synth: Any) -> None:
    for policy in synth.resources("AWS::SQS::QueuePolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements
        )


def test_lease_table_keyed_by_lease_key_with_pitr_and_cmk(synth: Any) -> None:
    table = _by_name(
        synth, "AWS::DynamoDB::Table", "TableName", synth.config.scoped(names.LEASE_TABLE)
    )
    assert table["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "leaseKey", "AttributeType": "S"}]
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["SSESpecification"]["SSEType"] == "KMS"
    assert "KMSMasterKeyId" in table["SSESpecification"]


def test_database_is_private_encrypted_protected_and_tls_only(synth: Any) -> None:
    db = _one(synth.resources("AWS::RDS::DBInstance"))
    assert db["PubliclyAccessible"] is False
    assert db["StorageEncrypted"] is True
    assert "KmsKeyId" in db
    assert db["DeletionProtection"] is True
    assert db["BackupRetentionPeriod"] == synth.config.db_backup_retention_days
    assert db["MultiAZ"] is synth.config.db_multi_az
    assert db["EnableCloudwatchLogsExports"] == ["postgresql", "upgrade"]
    params = _one(synth.resources("AWS::RDS::DBParameterGroup"))["Parameters"]
    assert params["rds.force_ssl"] == "1"
    assert params["max_connections"] == str(synth.config.db_max_connections)


def test_multi_az_is_a_parameter(synth_prod: Any) -> None:
    assert _one(synth_prod.resources("AWS::RDS::DBInstance"))["MultiAZ"] is True


def test_database_subnets_are_isolated(synth: Any) -> None:
    group = _one(synth.resources("AWS::RDS::DBSubnetGroup"))
    network = synth.template("network")
    exported = json.dumps(group["SubnetIds"])
    assert "dataSubnet" in exported
    assert "appSubnet" not in exported
    for resource in network["Resources"].values():
        assert resource["Type"] not in (
            "AWS::EC2::InternetGateway",
            "AWS::EC2::NatGateway",
            "AWS::EC2::EIP",
        )
        if resource["Type"] == "AWS::EC2::Subnet":
            assert resource["Properties"]["MapPublicIpOnLaunch"] is False


def test_credentials_are_rotated_secrets_with_the_shared_names(synth: Any) -> None:
    secrets = synth.resources("AWS::SecretsManager::Secret", "data")
    named = {s["Properties"].get("Name") for s in secrets.values()}
    expected = {*names.DB_ROLE_SECRETS.values(), names.PAN_KEY_SECRET}
    assert {synth.config.scoped(name) for name in expected} <= named
    assert all(name.startswith("cardstream-dev/") for name in named if name)
    for secret in secrets.values():
        assert "KmsKeyId" in secret["Properties"]
    schedules = synth.resources("AWS::SecretsManager::RotationSchedule", "data")
    # The master secret and every role's secret rotate.
    assert len(schedules) == 1 + len(names.DB_ROLE_SECRETS)
    for schedule in schedules.values():
        assert schedule["Properties"]["RotationRules"]["ScheduleExpression"] == "rate(30 days)"


def test_every_kms_key_rotates(synth: Any) -> None:
    keys = synth.resources("AWS::KMS::Key")
    assert len(keys) >= 8
    for key in keys.values():
        assert key["Properties"]["EnableKeyRotation"] is True


def test_every_log_group_is_encrypted_with_retention(synth: Any) -> None:
    groups = synth.resources("AWS::Logs::LogGroup")
    assert len(groups) >= 7
    for group in groups.values():
        assert "KmsKeyId" in group["Properties"]
        assert group["Properties"]["RetentionInDays"] >= 365


def test_image_repositories_scan_and_keep_tags_immutable(synth: Any) -> None:
    repos = synth.resources("AWS::ECR::Repository")
    assert {r["Properties"]["RepositoryName"] for r in repos.values()} == {
        "cardstream-dev/ingest-api",
        "cardstream-dev/stream-writer",
        "cardstream-dev/db-loader",
        "cardstream-dev/dashboard",
    }
    for repo in repos.values():
        assert repo["Properties"]["ImageTagMutability"] == "IMMUTABLE"
        assert repo["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repo["Properties"]["EncryptionConfiguration"]["EncryptionType"] == "KMS"


def test_image_retention_counts_commit_tags_only(synth: Any) -> None:
    # Images are pushed by digest; an index's own manifests (platform images, SBOM and
    # provenance) are untagged. A rule counting untagged or all images could expire a
    # manifest of an image a task still runs: only the commit tags are counted.
    for repo in synth.resources("AWS::ECR::Repository").values():
        policy = json.loads(repo["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])
        (rule,) = policy["rules"]
        assert rule["selection"] == {
            "tagStatus": "tagged",
            "tagPrefixList": [COMMIT_TAG_PREFIX],
            "countType": "imageCountMoreThan",
            "countNumber": KEPT_COMMIT_IMAGES,
        }
        assert rule["action"] == {"type": "expire"}
    # The deploy workflow gives every image it deploys that tag (or finds it there).
    deploy = yaml.safe_load((REPO_ROOT / ".github/workflows/deploy.yml").read_text())
    push = next(s for s in deploy["jobs"]["deploy"]["steps"] if "put-image" in s.get("run", ""))
    assert push["env"]["COMMIT_TAG"] == f"{COMMIT_TAG_PREFIX}${{{{ github.sha }}}}"
    assert '--image-tag "$COMMIT_TAG"' in push["run"]
    assert '--image-digest "$digest"' in push["run"]
    assert '"imageTag=${COMMIT_TAG}"' in push["run"]


def test_stateful_resources_are_retained(synth: Any) -> None:
    for resource_type in (
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::KMS::Key",
        "AWS::Cognito::UserPool",
    ):
        for resource in synth.resources(resource_type).values():
            assert resource["DeletionPolicy"] == "Retain", resource_type
    assert _one_resource(synth, "AWS::RDS::DBInstance")["DeletionPolicy"] == "Snapshot"


def _one_resource(synth: Any, resource_type: str) -> dict[str, Any]:
    found = synth.resources(resource_type)
    assert len(found) == 1
    return dict(next(iter(found.values())))


@pytest.mark.parametrize("kind", ["network", "data", "services", "api", "monitoring"])
def test_resources_carry_owner_environment_and_cost_tags(synth: Any, kind: str) -> None:
    tagged = 0
    for resource in synth.template(kind)["Resources"].values():
        tags = resource.get("Properties", {}).get("Tags")
        if isinstance(tags, list) and tags and isinstance(tags[0], dict) and "Key" in tags[0]:
            keys = {tag["Key"]: tag["Value"] for tag in tags}
            assert keys.get("owner") == synth.config.owner
            assert keys.get("environment") == synth.config.environment
            assert keys.get("cost-center") == synth.config.cost_center
            tagged += 1
    assert tagged > 0


def test_database_and_lease_table_are_in_a_daily_backup_plan(synth: Any) -> None:
    plan = _one(synth.resources("AWS::Backup::BackupPlan", "data"))["BackupPlan"]
    (rule,) = plan["BackupPlanRule"]
    assert rule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert rule["Lifecycle"]["DeleteAfterDays"] == synth.config.backup_retention_days
    selection = _one(synth.resources("AWS::Backup::BackupSelection", "data"))
    resources = json.dumps(selection["BackupSelection"]["Resources"])
    assert ":rds:" in resources
    assert "DatabaseInstance" in resources
    assert "LeasesTable" in resources
    vault = _one(synth.resources("AWS::Backup::BackupVault", "data"))
    assert "Fn::GetAtt" in vault["EncryptionKeyArn"]
    # Locked: no recovery point is deleted before its retention ends.
    assert vault["LockConfiguration"]["MinRetentionDays"] == synth.config.backup_retention_days
    assert "ChangeableForDays" not in vault["LockConfiguration"]


def test_production_load_balancer_cannot_be_deleted(synth: Any, synth_prod: Any) -> None:
    def deletion_protection(variant: Any) -> str:
        (alb,) = variant.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
        attributes = {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}
        return str(attributes.get("deletion_protection.enabled", "false"))

    assert deletion_protection(synth_prod) == "true"
    assert deletion_protection(synth) == "false"


def _log_groups_by_logical_id(synth: Any) -> dict[str, dict[str, Any]]:
    return {
        key.split("/")[-1]: group["Properties"]
        for key, group in synth.resources("AWS::Logs::LogGroup").items()
    }


def test_lambda_functions_log_to_groups_of_ours(synth: Any) -> None:
    groups = _log_groups_by_logical_id(synth)
    functions = synth.resources("AWS::Lambda::Function")
    assert len(functions) >= 2  # the bucket-notification and default-SG handlers
    for key, function in functions.items():
        target = function["Properties"]["LoggingConfig"]["LogGroup"]
        group = groups[target["Ref"]]
        assert "KmsKeyId" in group, key
        assert group["RetentionInDays"] >= 365
    applications = synth.resources("AWS::Serverless::Application", "data")
    assert len(applications) == 6  # rotation: the master secret and five roles
    names_by_id = {logical_id: g.get("LogGroupName") for logical_id, g in groups.items()}
    for key, application in applications.items():
        function_name = application["Properties"]["Parameters"]["functionName"]
        dependencies = application["DependsOn"]
        assert f"/aws/lambda/{function_name}" in [names_by_id.get(d) for d in dependencies], key


def test_database_log_exports_go_to_groups_of_ours(synth: Any) -> None:
    (instance,) = synth.resources("AWS::RDS::DBInstance").values()
    identifier = instance["Properties"]["DBInstanceIdentifier"]
    assert identifier == f"{synth.config.prefix}-postgres"
    groups = _log_groups_by_logical_id(synth)
    created = {groups[d].get("LogGroupName") for d in instance["DependsOn"] if d in groups}
    assert created == {
        f"/aws/rds/instance/{identifier}/{export}"
        for export in instance["Properties"]["EnableCloudwatchLogsExports"]
    }


def test_load_balancer_logs_are_locked_in_the_audit_log_bucket(synth: Any, synth_prod: Any) -> None:
    for variant, mode in ((synth, "GOVERNANCE"), (synth_prod, "COMPLIANCE")):
        name = variant.config.audit_log_bucket_name
        bucket = _by_name(variant, "AWS::S3::Bucket", "BucketName", name)
        assert bucket["ObjectLockEnabled"] is True
        assert bucket["ObjectLockConfiguration"] == {
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": mode, "Days": variant.config.log_retention_days}},
        }
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
        (alb,) = variant.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
        attributes = {a["Key"]: a["Value"] for a in alb["Properties"]["LoadBalancerAttributes"]}
        assert attributes["access_logs.s3.enabled"] == "true"
        assert "AuditLogs" in json.dumps(attributes["access_logs.s3.bucket"])


def test_two_environments_can_share_an_account(synth: Any) -> None:
    # Every name that must be unique in an account and region carries the environment, so a
    # second environment in the same account (staging beside prod) collides with none.
    # ECS service names are unique per cluster only, and each environment has its own.
    named = {
        "AWS::Kinesis::Stream": "Name",
        "AWS::SQS::Queue": "QueueName",
        "AWS::DynamoDB::Table": "TableName",
        "AWS::SecretsManager::Secret": "Name",
        "AWS::ECR::Repository": "RepositoryName",
        "AWS::S3::Bucket": "BucketName",
        "AWS::ECS::Cluster": "ClusterName",
        "AWS::ECS::TaskDefinition": "Family",
        "AWS::RDS::DBInstance": "DBInstanceIdentifier",
        "AWS::Backup::BackupVault": "BackupVaultName",
        "AWS::CloudWatch::Dashboard": "DashboardName",
        "AWS::WAFv2::WebACL": "Name",
        "AWS::ApiGateway::RestApi": "Name",
        "AWS::Cognito::UserPoolDomain": "Domain",
        "AWS::IAM::Role": "RoleName",
    }
    for resource_type, field in named.items():
        values = {
            key: resource["Properties"].get(field)
            for key, resource in synth.resources(resource_type).items()
        }
        # Unnamed ones (the RDS master secret, services' task definitions) get a unique
        # name from CloudFormation; at least one of each type is named by us.
        given = {key: value for key, value in values.items() if value is not None}
        assert given, resource_type
        for key, value in given.items():
            assert isinstance(value, str), (key, value)
            assert re.search(rf"(^|[-/]){synth.config.environment}([-/]|$)", value), (key, value)
