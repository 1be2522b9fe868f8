"""Template assertions on networking, IAM, the Fargate services and their scaling."""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest

from cardstream_shared import resource_names as names
from cardstream_shared.settings import load_settings

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

DATA_SERVICE_PREFIXES = ("kinesis:", "s3:", "sqs:", "dynamodb:", "secretsmanager:", "kms:")


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_policies(synth: Any) -> dict[str, dict[str, Any]]:
    """Every identity-based policy document (inline, managed and role-embedded)."""
    documents: dict[str, dict[str, Any]] = {}
    for resource_type in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for logical_id, resource in synth.resources(resource_type).items():
            documents[logical_id] = resource["Properties"]["PolicyDocument"]
    for logical_id, resource in synth.resources("AWS::IAM::Role").items():
        for index, policy in enumerate(resource["Properties"].get("Policies", [])):
            documents[f"{logical_id}#{index}"] = policy["PolicyDocument"]
    return documents


def test_no_identity_policy_uses_a_wildcard_action(synth: Any) -> None:
    documents = _identity_policies(synth)
    assert len(documents) >= 10
    for name, document in documents.items():
        for statement in _statements(document):
            for action in _as_list(statement["Action"]):
                assert "*" not in action, f"{name}: {action}"


def test_data_actions_never_target_every_resource(synth: Any) -> None:
    for name, document in _identity_policies(synth).items():
        for statement in _statements(document):
            actions = _as_list(statement["Action"])
            if any(a.startswith(DATA_SERVICE_PREFIXES) for a in actions):
                assert "*" not in _as_list(statement["Resource"]), f"{name}: {actions}"


def _task_definition(synth: Any, family_part: str) -> dict[str, Any]:
    found = [
        resource["Properties"]
        for resource in synth.resources("AWS::ECS::TaskDefinition").values()
        if resource["Properties"]["ContainerDefinitions"][0]["Name"] == family_part
    ]
    assert len(found) == 1, family_part
    return found[0]


def _environment(synth: Any, container: str) -> dict[str, Any]:
    definition = _task_definition(synth, container)["ContainerDefinitions"][0]
    return {item["Name"]: item["Value"] for item in definition.get("Environment", [])}


def test_the_dashboard_signs_operators_in_asking_for_the_operator_scope(synth: Any) -> None:
    dashboard = _environment(synth, "dashboard")
    # The page shows every tenant's data: it asks for tenants:all beside transactions:read.
    asked = dashboard["DASHBOARD_SIGNIN_SCOPES"].split()
    assert asked == [
        "openid",
        f"cardstream/{names.SCOPE_READ}",
        f"cardstream/{names.SCOPE_ALL_TENANTS}",
    ]
    assert "OperatorClient" in json.dumps(dashboard["DASHBOARD_SIGNIN_CLIENT_ID"])
    # The hosted UI grants only scopes the operators' client is allowed.
    (operators,) = [
        client["Properties"]
        for client in synth.resources("AWS::Cognito::UserPoolClient", "data").values()
        if client["Properties"]["ClientName"] == "operators"
    ]
    allowed = json.dumps(operators["AllowedOAuthScopes"])
    for scope in asked:
        assert scope.removeprefix("cardstream/") in allowed, scope


def test_signing_out_of_the_dashboard_ends_the_hosted_ui_session(synth: Any) -> None:
    dashboard = _environment(synth, "dashboard")
    # The hosted UI's logout endpoint, at the same domain as its authorization endpoint.
    authorize = json.dumps(dashboard["DASHBOARD_SIGNIN_AUTHORIZE_URL"])
    logout = json.dumps(dashboard["DASHBOARD_SIGNOUT_URL"])
    assert authorize.replace("/oauth2/authorize", "/logout") == logout
    # It sends the browser back to the dashboard's address, a sign-out URL of the client.
    (operators,) = [
        client["Properties"]
        for client in synth.resources("AWS::Cognito::UserPoolClient", "data").values()
        if client["Properties"]["ClientName"] == "operators"
    ]
    assert operators["LogoutURLs"] == [f"{dashboard['DASHBOARD_PUBLIC_URL']}/"]


def _task_policy_actions(synth: Any, role_prefix: str) -> set[str]:
    actions: set[str] = set()
    for logical_id, policy in synth.resources("AWS::IAM::ManagedPolicy", "services").items():
        if logical_id.split("/")[-1].startswith(role_prefix):
            for statement in _statements(policy["Properties"]["PolicyDocument"]):
                actions.update(_as_list(statement["Action"]))
    return actions


def test_task_roles_hold_only_what_each_service_does(synth: Any) -> None:
    ingest = _task_policy_actions(synth, "IngestApi")
    writer = _task_policy_actions(synth, "StreamWriter")
    loader = _task_policy_actions(synth, "DbLoader")
    assert "kinesis:PutRecords" in ingest
    assert "kinesis:GetRecords" not in ingest
    assert not any(a.startswith(("s3:", "sqs:", "dynamodb:")) for a in ingest)
    assert {"kinesis:GetRecords", "dynamodb:UpdateItem", "s3:PutObject"} <= writer
    assert not any(a.startswith(("sqs:", "secretsmanager:")) for a in writer)
    assert "kinesis:PutRecords" not in writer
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "s3:GetObject"} <= loader
    assert "sqs:SendMessage" not in loader
    assert "sqs:PurgeQueue" not in loader
    assert "s3:PutObject" not in loader
    assert not any(a.startswith("kinesis:") for a in loader)


def test_services_get_the_resource_names_and_cognito_settings(synth: Any) -> None:
    ingest = _environment(synth, "ingest-api")
    assert ingest["INGEST_HOST"] == "0.0.0.0"
    assert ingest["INGEST_JWT_AUDIENCE_CLAIM"] == "client_id"
    assert ingest["INGEST_JWT_SCOPE_PREFIX"] == "cardstream/"
    assert ingest["INGEST_ENVIRONMENT"] == synth.config.environment
    issuer = ingest["INGEST_JWT_ISSUER"]["Fn::Join"][1]
    assert issuer[0] == f"https://cognito-idp.{synth.config.region}.amazonaws.com/"
    assert "UserPool" in json.dumps(issuer[1])
    config = synth.config
    # The tasks have no route to Cognito: they read the JWKS copy through the S3 endpoint.
    assert ingest["INGEST_JWKS_URL"] == (
        f"https://{config.jwks_bucket_name}.s3.{config.region}.amazonaws.com/jwks.json"
    )
    # Every merchant's client and the operators' client; nothing else.
    separator, audiences = ingest["INGEST_JWT_AUDIENCE"]["Fn::Join"]
    assert separator == ","
    merchants = [m.name.title().replace("-", "") for m in synth.config.merchants]
    assert merchants
    rendered = [json.dumps(audience) for audience in audiences]
    expected = [*(f"UserPoolMerchant{m}" for m in merchants), "UserPoolOperatorClient"]
    assert len(rendered) == len(expected)
    for audience, client in zip(rendered, expected, strict=True):
        assert client in audience, (client, audience)
    dashboard = _environment(synth, "dashboard")
    assert "OperatorClient" in json.dumps(dashboard["DASHBOARD_JWT_AUDIENCE"])
    writer = _environment(synth, "stream-writer")
    assert writer["WRITER_BUCKET"] == synth.config.landing_bucket_name
    assert writer["WRITER_STREAM_NAME"] == synth.config.scoped(names.STREAM_NAME)
    assert writer["WRITER_LEASE_TABLE"] == synth.config.scoped(names.LEASE_TABLE)
    loader = _environment(synth, "db-loader")
    assert "LOADER_QUEUE_URL" in loader
    assert "LOADER_DATABASE_SECRET_ID" in loader


def test_migration_task_takes_master_credentials_as_ecs_secrets(synth: Any) -> None:
    container = _task_definition(synth, "migrate")["ContainerDefinitions"][0]
    assert container["Command"] == ["python", "-m", "db_loader.migrate"]
    secrets = {item["Name"] for item in container["Secrets"]}
    assert secrets == {"PGUSER", "PGPASSWORD", "PGHOST", "PGPORT", "PGDATABASE"}
    assert not any("PASSWORD" in item["Name"] for item in container.get("Environment", []))
    # The environment's own role secrets, by ARN, one per login role.
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    mapping = json.dumps(env["CARDSTREAM_DB_ROLE_SECRETS"])
    for role in names.DB_ROLE_SECRETS:
        assert f'\\"{role}\\":' in mapping, role
    assert mapping.count("DatabaseRole") == len(names.DB_ROLE_SECRETS)


def test_containers_run_as_non_root_with_health_checks_and_encrypted_logs(synth: Any) -> None:
    definitions = synth.resources("AWS::ECS::TaskDefinition")
    assert len(definitions) == 5  # four services and the migration task (data stack)
    for resource in definitions.values():
        container = resource["Properties"]["ContainerDefinitions"][0]
        assert container["User"] == "10001"
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        if container["Name"] != "migrate":
            assert container["HealthCheck"]["Command"][0] == "CMD"
            assert container["ReadonlyRootFilesystem"] is True


def _scaling(synth: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    targets = synth.resources("AWS::ApplicationAutoScaling::ScalableTarget", "services")
    policies = synth.resources("AWS::ApplicationAutoScaling::ScalingPolicy", "services")
    return targets, policies


def _target_of(targets: dict[str, Any], service_prefix: str) -> tuple[str, dict[str, Any]]:
    found = [
        (key.split("/")[-1], value["Properties"])
        for key, value in targets.items()
        if key.split("/")[-1].startswith(service_prefix)
    ]
    assert len(found) == 1
    return found[0]


def _policies_of(policies: dict[str, Any], target_id: str) -> list[dict[str, Any]]:
    return [
        p["Properties"]
        for p in policies.values()
        if p["Properties"]["ScalingTargetId"] == {"Ref": target_id}
    ]


def test_every_service_has_bounds_and_a_scaling_policy(synth: Any) -> None:
    targets, policies = _scaling(synth)
    assert len(targets) == 4
    for logical_id, target in targets.items():
        props = target["Properties"]
        assert 1 <= props["MinCapacity"] <= props["MaxCapacity"]
        assert _policies_of(policies, logical_id.split("/")[-1]), logical_id


def test_ingest_api_scales_on_cpu_and_requests(synth: Any) -> None:
    targets, policies = _scaling(synth)
    target_id, target = _target_of(targets, "IngestApi")
    assert target["MinCapacity"] == 2
    assert target["MaxCapacity"] == synth.config.ingest_max_tasks
    metrics = {
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]
        for p in _policies_of(policies, target_id)
    }
    assert metrics == {"ECSServiceAverageCPUUtilization", "ALBRequestCountPerTarget"}


def test_ingest_api_request_target_is_the_benchmarked_rate_at_the_cpu_target(
    synth: Any,
) -> None:
    # ALBRequestCountPerTarget is requests per task per minute: the target is what one task
    # serves in a minute of single-record requests at the CPU target, by the benchmark.
    targets, policies = _scaling(synth)
    target_id, _ = _target_of(targets, "IngestApi")
    tracking = {
        p["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]: p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"]
        for p in _policies_of(policies, target_id)
    }
    cpu_share = tracking["ECSServiceAverageCPUUtilization"] / 100
    vcpu = int(_task_definition(synth, "ingest-api")["Cpu"]) / 1024
    figures = tomllib.loads((REPO_ROOT / "bench" / "figures.toml").read_text())
    per_cpu_second = figures["ingest_api"]["single_requests_per_cpu_second"]
    per_minute = per_cpu_second * vcpu * cpu_share * 60
    assert per_minute * 0.99 <= tracking["ALBRequestCountPerTarget"] <= per_minute


def test_stream_writer_scales_on_iterator_age_up_to_the_shard_count(
    synth: Any, synth_prod: Any
) -> None:
    for variant in (synth, synth_prod):
        targets, policies = _scaling(variant)
        target_id, target = _target_of(targets, "StreamWriter")
        assert target["MaxCapacity"] == variant.config.shard_count
        assert target["MinCapacity"] == 1
        steps = _policies_of(policies, target_id)
        assert {p["PolicyType"] for p in steps} == {"StepScaling"}
        # No CPU target: the writer's lag is the stream's iterator age.
        assert "TargetTrackingScalingPolicyConfiguration" not in json.dumps(steps)
        alarms = [
            a["Properties"]
            for a in variant.resources("AWS::CloudWatch::Alarm", "services").values()
            if a["Properties"].get("MetricName") == "GetRecords.IteratorAgeMilliseconds"
        ]
        assert {a["Statistic"] for a in alarms} == {"Maximum"}
        thresholds = {a["ComparisonOperator"]: a["Threshold"] for a in alarms}
        # Scale in once caught up (well within the flush age), out when a minute behind.
        assert thresholds == {
            "LessThanOrEqualToThreshold": 10_000,
            "GreaterThanOrEqualToThreshold": 60_000,
        }


def test_db_loader_scales_on_backlog_per_task(synth: Any) -> None:
    targets, policies = _scaling(synth)
    target_id, target = _target_of(targets, "DbLoader")
    assert target["MaxCapacity"] == synth.config.loader_max_tasks
    step_policies = _policies_of(policies, target_id)
    assert {p["PolicyType"] for p in step_policies} == {"StepScaling"}
    alarms = synth.resources("AWS::CloudWatch::Alarm", "services")
    backlog = [
        a["Properties"]
        for a in alarms.values()
        if "Metrics" in a["Properties"]
        and any("RunningTaskCount" in json.dumps(m) for m in a["Properties"]["Metrics"])
    ]
    assert backlog
    for alarm in backlog:
        rendered = json.dumps(alarm["Metrics"])
        assert "ApproximateNumberOfMessagesVisible" in rendered
        assert "visible / IF(running > 0, running, 1)" in rendered
    upper = [a for a in backlog if a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"]
    assert upper[0]["Threshold"] == synth.config.loader_backlog_per_task


def test_vpc_has_an_endpoint_for_every_aws_api_the_tasks_call(synth: Any) -> None:
    endpoints = synth.resources("AWS::EC2::VPCEndpoint", "network")
    services = {json.dumps(e["Properties"]["ServiceName"]) for e in endpoints.values()}
    rendered = " ".join(services)
    for service in (
        ".s3",
        ".dynamodb",
        ".kinesis-streams",
        ".sqs",
        ".secretsmanager",
        ".ecr.api",
        ".ecr.dkr",
        ".logs",
    ):
        assert service in rendered, service


def test_security_groups_admit_only_what_each_workload_uses(synth: Any) -> None:
    groups = synth.resources("AWS::EC2::SecurityGroup", "network")
    operator_rules = []
    for logical_id, group in groups.items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            if rule.get("CidrIp") in synth.config.operator_cidrs:
                operator_rules.append((logical_id, rule["FromPort"], rule["ToPort"]))
                continue
            # No ingress from anywhere: only the VPC range (endpoints) or another group.
            assert rule.get("CidrIp") in (None, "10.40.0.0/16"), logical_id
    # The operators' networks reach the dashboard listener of the ALB, and nothing else.
    alb = next(key for key in groups if key.split("/")[-1].startswith("NetworkAlb"))
    assert operator_rules == [(alb, 8443, 8443)] * len(synth.config.operator_cidrs)
    alb_from_groups = [
        r["Properties"]
        for r in synth.resources("AWS::EC2::SecurityGroupIngress", "network").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0].startswith("NetworkAlb")
    ]
    assert [
        (r["SourceSecurityGroupId"]["Fn::GetAtt"][0][:14], r["FromPort"]) for r in alb_from_groups
    ] == [("NetworkVpcLink", 443)]
    database_rules = [
        r["Properties"]
        for r in synth.resources("AWS::EC2::SecurityGroupIngress", "network").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0].startswith("NetworkDatabase")
    ]
    sources = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in database_rules}
    assert {r["FromPort"] for r in database_rules} == {5432}
    assert all("CidrIp" not in r for r in database_rules)
    assert not any(s.startswith("NetworkStreamWriter") for s in sources)
    assert any(s.startswith("NetworkDbLoader") for s in sources)


def test_tasks_have_no_public_ip_and_the_alb_is_internal(synth: Any) -> None:
    for service in synth.resources("AWS::ECS::Service", "services").values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
    balancers = synth.resources("AWS::ElasticLoadBalancingV2::LoadBalancer", "services")
    for balancer in balancers.values():
        assert balancer["Properties"]["Scheme"] == "internal"


@pytest.mark.parametrize("service", ["ingest-api", "stream-writer", "db-loader", "dashboard"])
def test_task_environment_matches_the_service_settings(
    synth: Any, service_configs: dict[str, Any], service: str
) -> None:
    config = service_configs[service]
    env = _environment(synth, service)
    missing = config.required - set(env)
    assert not missing, f"{service} would refuse to start: {sorted(missing)} unset"
    unknown = {key for key in env if key.startswith(config.prefix)} - config.variables
    assert not unknown, f"{service} is given variables it never reads: {sorted(unknown)}"
    # Outside local/test the services refuse placeholder secrets; the task says where it runs.
    assert env[config.variable("environment")] == synth.config.environment
    assert config.variable("aws_endpoint_url") not in env


def _render(value: Any) -> str:
    """A CloudFormation value as a string, references replaced by a stand-in."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_render(part) for part in parts)
    return "resolved-at-deploy-time"


@pytest.mark.parametrize("service", ["ingest-api", "stream-writer", "db-loader", "dashboard"])
def test_the_settings_class_accepts_the_task_environment(
    synth: Any, service_configs: dict[str, Any], service: str
) -> None:
    definition = _task_definition(synth, service)["ContainerDefinitions"][0]
    env = {item["Name"]: _render(item["Value"]) for item in definition["Environment"]}
    settings = service_configs[service].load(env)
    assert settings.environment == synth.config.environment
    assert settings.aws_region == synth.config.region
    assert settings.aws_endpoint_url is None


def test_jwks_copy_is_readable_only_through_the_vpc_s3_endpoint(synth: Any) -> None:
    policies = [
        p["Properties"]
        for p in synth.resources("AWS::S3::BucketPolicy", "data").values()
        if "ReadKeysFromTheVpcOnly" in json.dumps(p)
    ]
    assert len(policies) == 1
    statement = next(
        s
        for s in policies[0]["PolicyDocument"]["Statement"]
        if s.get("Sid") == "ReadKeysFromTheVpcOnly"
    )
    assert statement["Action"] == "s3:GetObject"
    assert json.dumps(statement["Resource"]).endswith('/jwks.json"]]}')
    source = statement["Condition"]["StringEquals"]["aws:SourceVpce"]
    assert "NetworkVpcS3" in json.dumps(source)


def test_every_hop_through_the_load_balancer_is_https(synth: Any) -> None:
    listeners = synth.resources("AWS::ElasticLoadBalancingV2::Listener", "services")
    assert {listener["Properties"]["Port"] for listener in listeners.values()} == {443, 8443}
    for listener in listeners.values():
        props = listener["Properties"]
        assert props["Protocol"] == "HTTPS"
        assert props["Certificates"] == [{"CertificateArn": synth.config.certificate_arn}]
        assert props["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    groups = synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup", "services")
    assert len(groups) == 2
    for group in groups.values():
        assert group["Properties"]["Protocol"] == "HTTPS"
        assert group["Properties"]["HealthCheckProtocol"] == "HTTPS"
    for service, prefix in (("ingest-api", "INGEST_"), ("dashboard", "DASHBOARD_")):
        assert _environment(synth, service)[f"{prefix}TLS_SELF_SIGNED"] == "true"
        container = _task_definition(synth, service)["ContainerDefinitions"][0]
        assert "https://127.0.0.1:" in container["HealthCheck"]["Command"][-1]


def test_the_load_balancer_forwards_no_unauthenticated_metrics(synth: Any) -> None:
    # /metrics needs no token at the services; neither listener lets it through.
    listeners = synth.resources("AWS::ElasticLoadBalancingV2::Listener", "services")
    rules = [
        r["Properties"]
        for r in synth.resources("AWS::ElasticLoadBalancingV2::ListenerRule", "services").values()
    ]
    blocked = set()
    for rule in rules:
        (condition,) = rule["Conditions"]
        if condition["Field"] != "path-pattern":
            continue
        assert "/metrics" in condition["PathPatternConfig"]["Values"]
        assert rule["Priority"] == 1
        (action,) = rule["Actions"]
        assert action["Type"] == "fixed-response"
        assert action["FixedResponseConfig"]["StatusCode"] == "404"
        blocked.add(rule["ListenerArn"]["Ref"])
    assert blocked == {key.split("/")[-1] for key in listeners}


def test_every_vpc_endpoint_admits_only_this_account(synth: Any) -> None:
    account = synth.config.account
    endpoints = synth.resources("AWS::EC2::VPCEndpoint", "network")
    assert len(endpoints) == 11
    for key, endpoint in endpoints.items():
        statements = endpoint["Properties"]["PolicyDocument"]["Statement"]
        for statement in statements:
            assert statement["Effect"] == "Allow", key
            if statement["Sid"] == "ThisAccountsApisOnly":
                # The unsigned sign-in relay: this account's private APIs, invoke only.
                assert statement["Action"] == "execute-api:Invoke"
                assert f":{account}:*" in json.dumps(statement["Resource"])
                continue
            if statement["Sid"] == "UnsignedJwksRead":
                # The one anonymous read: the public keys, one object, nothing else.
                assert statement["Action"] == "s3:GetObject"
                assert json.dumps(statement["Resource"]).endswith(
                    f'{synth.config.jwks_bucket_name}/jwks.json"]]}}'
                )
                continue
            assert statement["Condition"]["StringEquals"]["aws:PrincipalAccount"] == account, key
    gateways = {
        key.split("/")[-1]: e["Properties"]["PolicyDocument"]["Statement"]
        for key, e in endpoints.items()
        if e["Properties"].get("VpcEndpointType", "Gateway") == "Gateway"
    }
    assert len(gateways) == 2
    for key, statements in gateways.items():
        broad = [s for s in statements if s["Resource"] == "*"]
        assert broad, key
        for statement in broad:
            assert statement["Condition"]["StringEquals"]["aws:ResourceAccount"] == account


def _service_statements(synth: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for resource_type, field in (
        ("AWS::KMS::Key", "KeyPolicy"),
        ("AWS::SQS::QueuePolicy", "PolicyDocument"),
        ("AWS::SNS::TopicPolicy", "PolicyDocument"),
    ):
        for key, resource in synth.resources(resource_type).items():
            for statement in resource["Properties"][field]["Statement"]:
                principal = statement.get("Principal")
                allowed = statement["Effect"] == "Allow"
                if allowed and isinstance(principal, dict) and "Service" in principal:
                    found.append((key, statement))
    return found


def test_service_principals_act_only_for_this_account(synth: Any) -> None:
    # No confused deputy: a service is trusted on behalf of this account's resources only.
    statements = _service_statements(synth)
    services = {s["Principal"]["Service"] for _, s in statements}
    assert services == {
        "s3.amazonaws.com",
        "cloudwatch.amazonaws.com",
        f"logs.{synth.config.region}.amazonaws.com",
    }
    for key, statement in statements:
        conditions = json.dumps(statement.get("Condition", {}))
        if statement["Principal"]["Service"].startswith("logs."):
            # CloudWatch Logs names the log group in the encryption context.
            assert "kms:EncryptionContext:aws:logs:arn" in conditions, key
            assert f":{synth.config.account}:log-group:*" in conditions
        else:
            assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == (
                synth.config.account
            ), key
            assert "aws:SourceArn" in conditions, key


def test_alarms_may_publish_to_their_topic(synth: Any) -> None:
    (policy,) = synth.resources("AWS::SNS::TopicPolicy", "monitoring").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    publish = [s for s in statements if s["Effect"] == "Allow"]
    assert [s["Principal"] for s in publish] == [{"Service": "cloudwatch.amazonaws.com"}]
    assert publish[0]["Action"] == "sns:Publish"


# Each service's container and the settings class that reads its environment.
SERVICE_SETTINGS = {
    "ingest-api": "ingest_api.settings:IngestSettings",
    "stream-writer": "stream_writer.settings:WriterSettings",
    "db-loader": "db_loader.settings:LoaderSettings",
    "dashboard": "dashboard.settings:DashboardSettings",
}


@pytest.mark.parametrize("container", list(SERVICE_SETTINGS))
def test_each_service_starts_with_the_environment_the_stack_gives_it(
    synth: Any, container: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside local and test the settings fail closed (no default environment, https key
    # set, verify-full database TLS): the deployed environment must pass them.
    module, _, name = SERVICE_SETTINGS[container].partition(":")
    cls = getattr(importlib.import_module(module), name)
    for variable in list(os.environ):
        if variable.startswith(cls.env_name("")):
            monkeypatch.delenv(variable)
    for variable, value in _environment(synth, container).items():
        # Values CloudFormation resolves at deployment (ARNs, URLs) stand in as https URLs.
        monkeypatch.setenv(variable, value if isinstance(value, str) else "https://resolved")
    settings = load_settings(cls)
    assert settings.environment == synth.config.environment
    assert not settings.is_local


def test_the_migration_task_verifies_the_database_server(synth: Any) -> None:
    container = _task_definition(synth, "migrate")["ContainerDefinitions"][0]
    env = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert env["PGSSLMODE"] == "verify-full"
