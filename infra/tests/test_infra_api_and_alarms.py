"""Template assertions on the public API (authorizer, scopes, throttling) and the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cardstream_infra.components.alarms import ITERATOR_AGE_MS
from cardstream_shared import resource_names as names

pytestmark = pytest.mark.unit


def _of_api(resources: dict[str, Any], api: str) -> dict[str, Any]:
    """The resources of one REST API (by its logical id's start)."""
    return {
        key: resource
        for key, resource in resources.items()
        if json.dumps(resource["Properties"]["RestApiId"]).startswith(f'{{"Ref": "{api}')
    }


def _resource_paths(synth: Any, api: str, kind: str) -> dict[str, str]:
    """Logical id of every resource of a REST API -> its full path."""
    resources = _of_api(synth.resources("AWS::ApiGateway::Resource", kind), api)
    paths: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        if logical_id not in paths:
            props = resources[f"{synth.config.prefix}-{kind}/{logical_id}"]["Properties"]
            parent = props["ParentId"]
            prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
            paths[logical_id] = f"{prefix}/{props['PathPart']}"
        return paths[logical_id]

    for key in resources:
        path_of(key.split("/")[-1])
    return paths


def _routes(synth: Any, api: str = "PublicApi", kind: str = "api") -> dict[str, dict[str, Any]]:
    """``"METHOD /path"`` -> the method's properties, of one REST API (in stack ``kind``)."""
    paths = _resource_paths(synth, api, kind)
    routes = {}
    for method in _of_api(synth.resources("AWS::ApiGateway::Method", kind), api).values():
        props = method["Properties"]
        resource = props["ResourceId"]
        path = "/" if "Fn::GetAtt" in resource else paths[resource["Ref"]]
        routes[f"{props['HttpMethod']} {path}"] = props
    return routes


def test_every_data_route_requires_a_cognito_token_with_its_scope(synth: Any) -> None:
    routes = _routes(synth)
    expected = {
        "POST /v1/transactions": names.SCOPE_WRITE,
        "POST /v1/transactions/batch": names.SCOPE_WRITE,
        "GET /v1/transactions/{trans_num}": names.SCOPE_READ,
        "GET /v1/alerts": names.SCOPE_READ,
        "GET /v1/alerts/{alert_id}": names.SCOPE_READ,
        "PATCH /v1/alerts/{alert_id}": names.SCOPE_ALERTS_REVIEW,
    }
    for key, scope in expected.items():
        route = routes[key]
        assert route["AuthorizationType"] == "COGNITO_USER_POOLS", key
        assert "AuthorizerId" in route
        assert route["AuthorizationScopes"] == [f"cardstream/{scope}"], key
    unauthenticated = {key for key, r in routes.items() if r["AuthorizationType"] == "NONE"}
    # Documentation carries no data; everything else needs a token.
    assert unauthenticated == {
        "GET /docs",
        "GET /redoc",
        "GET /openapi.json",
        "GET /static/{proxy+}",
    }
    assert set(routes) == set(expected) | unauthenticated
    assert not any(key.startswith("ANY") for key in routes)


def test_the_gateway_routes_are_the_ingest_api_operations(synth: Any) -> None:
    # Every /v1 operation the ingest-api documents has a gateway route, and no gateway
    # route leads nowhere (a new route in the service fails here until the gateway has it).
    from ingest_api.app import create_app
    from ingest_api.settings import IngestSettings

    settings = IngestSettings(
        environment="test",
        jwt_issuer="https://issuer.example",
        jwt_audience="client",
        jwks_url="https://issuer.example/jwks.json",
    )
    document = create_app(settings).openapi()
    operations = {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
        if path.startswith("/v1/")
    }
    routes = {key for key, r in _routes(synth).items() if r["AuthorizationType"] != "NONE"}
    assert routes == operations


def test_authorizer_trusts_only_the_cognito_pool(synth: Any) -> None:
    authorizers = synth.resources("AWS::ApiGateway::Authorizer", "api")
    assert len(authorizers) == 1
    props = next(iter(authorizers.values()))["Properties"]
    assert props["Type"] == "COGNITO_USER_POOLS"
    assert props["IdentitySource"] == "method.request.header.Authorization"
    assert len(props["ProviderARNs"]) == 1
    assert "UserPool" in json.dumps(props["ProviderARNs"])


def test_api_has_one_address_its_custom_domain_on_tls_1_2(synth: Any) -> None:
    api = next(iter(synth.resources("AWS::ApiGateway::RestApi", "api").values()))["Properties"]
    assert api["DisableExecuteApiEndpoint"] is True
    assert api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    domain = next(iter(synth.resources("AWS::ApiGateway::DomainName", "api").values()))
    assert domain["Properties"]["DomainName"] == synth.config.api_domain_name
    assert domain["Properties"]["RegionalCertificateArn"] == synth.config.certificate_arn
    assert domain["Properties"]["SecurityPolicy"] == "TLS_1_2"
    assert len(synth.resources("AWS::ApiGateway::BasePathMapping", "api")) == 1
    # The dashboard has no public API of its own any more (operators' network only).
    assert not synth.resources("AWS::ApiGatewayV2::Api")


def test_stage_is_throttled_and_logged_without_data(synth: Any) -> None:
    stages = _of_api(synth.resources("AWS::ApiGateway::Stage", "api"), "PublicApi")
    assert len(stages) == 1
    props = next(iter(stages.values()))["Properties"]
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == synth.config.api_rate_limit
    assert settings["ThrottlingBurstLimit"] == synth.config.api_burst_limit
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    assert "DestinationArn" in props["AccessLogSetting"]
    log_format = props["AccessLogSetting"]["Format"]
    assert "$context.status" in log_format
    assert "Authorization" not in log_format
    execution_logs = {
        key.split("/")[0]: g["Properties"]
        for key, g in synth.resources("AWS::Logs::LogGroup").items()
        if "API-Gateway-Execution-Logs_" in json.dumps(g["Properties"].get("LogGroupName"))
    }
    # The public API's and the token relay's.
    assert set(execution_logs) == {f"{synth.config.prefix}-api", f"{synth.config.prefix}-services"}
    assert all("KmsKeyId" in group for group in execution_logs.values())


def test_the_dashboards_sign_in_reaches_cognito_through_a_private_relay(synth: Any) -> None:
    # In the services stack, beside the dashboard that is given its address.
    routes = _routes(synth, "TokenRelay", "services")
    assert set(routes) == {"POST /oauth2/token", "POST /oauth2/revoke"}
    for key, route in routes.items():
        integration = route["Integration"]
        assert integration["Type"] == "HTTP_PROXY"
        uri = json.dumps(integration["Uri"])
        # The user pool's own domain (data stack), and only the one relayed path.
        assert "IdentityUserPoolDomain" in uri, uri
        assert uri.endswith(
            f'.auth.{synth.config.region}.amazoncognito.com{key.split(" ")[1]}"]]}}'
        ), uri
    (api,) = [
        r["Properties"]
        for key, r in synth.resources("AWS::ApiGateway::RestApi", "services").items()
        if "TokenRelay" in key
    ]
    assert api["EndpointConfiguration"]["Types"] == ["PRIVATE"]
    assert "NetworkVpcExecuteApi" in json.dumps(api["EndpointConfiguration"]["VpcEndpointIds"])
    (statement,) = api["Policy"]["Statement"]
    assert statement["Action"] == "execute-api:Invoke"
    assert "NetworkVpcExecuteApi" in json.dumps(statement["Condition"]["StringEquals"])
    associations = synth.resources("AWS::WAFv2::WebACLAssociation", "services")
    assert any("TokenRelay" in json.dumps(a["Properties"]) for a in associations.values())
    assert "TokenRelayUrl" in synth.template("services")["Outputs"]


def test_the_accounts_api_gateway_logging_role_is_set_before_any_stage_logs(synth: Any) -> None:
    # Execution logging needs the account's logging role. The services stack (the relay)
    # sets it; the api stack, deployed after it, relies on it and sets none of its own.
    (account,) = synth.resources("AWS::ApiGateway::Account").items()
    key, _ = account
    assert key.startswith(f"{synth.config.prefix}-services/")
    account_id = key.split("/")[-1]
    for stage_key, stage in synth.resources("AWS::ApiGateway::Stage", "services").items():
        assert account_id in stage.get("DependsOn", []), stage_key
    kinds = [s.stack_name.removeprefix(f"{synth.config.prefix}-") for s in synth.stacks.in_order()]
    assert kinds.index("services") < kinds.index("api")


def test_gateway_refusals_are_problem_json(synth: Any) -> None:
    responses = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in synth.resources("AWS::ApiGateway::GatewayResponse", "api").values()
    }
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "MISSING_AUTHENTICATION_TOKEN"} <= set(responses)
    for response in responses.values():
        headers = response["ResponseParameters"]
        assert headers["gatewayresponse.header.Content-Type"] == "'application/problem+json'"
    assert responses["MISSING_AUTHENTICATION_TOKEN"]["StatusCode"] == "404"


def test_api_reaches_the_internal_alb_over_https_through_a_vpc_link(synth: Any) -> None:
    for key, route in _routes(synth).items():
        integration = route["Integration"]
        assert integration["Type"] == "HTTP_PROXY", key
        assert integration["ConnectionType"] == "VPC_LINK"
        assert "VpcLink" in json.dumps(integration["ConnectionId"])
        # VPC link V2: the load balancer itself is the target, no Network Load Balancer.
        assert "IngressAlb" in json.dumps(integration["IntegrationTarget"])
        # HTTPS to the API's own name: API Gateway verifies the ALB certificate against it.
        assert integration["Uri"].startswith(f"https://{synth.config.api_domain_name}/")
        method, path = key.split(" ")
        assert integration["Uri"].endswith(path.replace("+}", "}"))
        assert integration["IntegrationHttpMethod"] == method
        for parameter in [p.strip("{}+") for p in path.split("/") if p.startswith("{")]:
            mapped = integration["RequestParameters"][f"integration.request.path.{parameter}"]
            assert mapped == f"method.request.path.{parameter}"


def _clients(synth: Any) -> dict[str, dict[str, Any]]:
    return {
        c["Properties"]["ClientName"]: c["Properties"]
        for c in synth.resources("AWS::Cognito::UserPoolClient", "data").values()
    }


def test_cognito_resource_server_has_every_scope(synth: Any) -> None:
    servers = synth.resources("AWS::Cognito::UserPoolResourceServer", "data")
    scopes = {s["ScopeName"] for server in servers.values() for s in server["Properties"]["Scopes"]}
    assert scopes == {
        names.SCOPE_WRITE,
        names.SCOPE_READ,
        names.SCOPE_ALERTS_REVIEW,
        names.SCOPE_ALL_TENANTS,
    }


def test_each_merchant_is_its_own_client_credentials_client(synth: Any) -> None:
    clients = _clients(synth)
    merchants = {f"merchant-{m.name}" for m in synth.config.merchants}
    assert len(merchants) >= 2
    # The merchants' clients and the operators': no shared merchant or reviewer client.
    assert set(clients) == merchants | {"operators"}
    for name in merchants:
        props = clients[name]
        assert props["AllowedOAuthFlows"] == ["client_credentials"]
        assert props["GenerateSecret"] is True
        scopes = json.dumps(props["AllowedOAuthScopes"])
        assert names.SCOPE_WRITE in scopes
        assert names.SCOPE_READ in scopes
        assert names.SCOPE_ALERTS_REVIEW not in scopes
        assert names.SCOPE_ALL_TENANTS not in scopes
        assert props["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    outputs = synth.template("data")["Outputs"]
    for merchant in synth.config.merchants:
        assert f"MerchantClient{merchant.name.title().replace('-', '')}" in outputs


def test_operators_sign_in_with_the_authorization_code_flow(synth: Any) -> None:
    props = _clients(synth)["operators"]
    assert props["AllowedOAuthFlows"] == ["code"]
    assert props["AllowedOAuthFlowsUserPoolClient"] is True
    # A public client: PKCE, not a secret copied into the dashboard's configuration.
    assert props.get("GenerateSecret", False) is False
    assert props["SupportedIdentityProviders"] == ["COGNITO"]
    dashboard = synth.config.dashboard_url
    assert props["CallbackURLs"] == [f"{dashboard}/auth/callback"]
    assert props["LogoutURLs"] == [f"{dashboard}/"]
    scopes = json.dumps(props["AllowedOAuthScopes"])
    for scope in (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS):
        assert scope in scopes
    assert names.SCOPE_WRITE not in scopes
    assert "openid" in props["AllowedOAuthScopes"]
    assert props["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]


def test_operators_are_people_with_mfa_and_threat_protection(synth: Any) -> None:
    pool = next(iter(synth.resources("AWS::Cognito::UserPool", "data").values()))["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["MfaConfiguration"] == "ON"
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    assert pool["UserPoolTier"] == "PLUS"
    assert pool["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
    (domain,) = synth.resources("AWS::Cognito::UserPoolDomain", "data").values()
    assert domain["Properties"]["Domain"].startswith(synth.config.prefix)


def _alarms(synth: Any) -> dict[str, dict[str, Any]]:
    return {
        key.split("/")[-1]: a["Properties"]
        for key, a in synth.resources("AWS::CloudWatch::Alarm", "monitoring").items()
    }


def _alarm(alarms: dict[str, dict[str, Any]], prefix: str) -> dict[str, Any]:
    found = [props for key, props in alarms.items() if key.startswith(f"Alarms{prefix}")]
    assert len(found) == 1, prefix
    return found[0]


def test_alarm_thresholds(synth: Any) -> None:
    alarms = _alarms(synth)
    config = synth.config
    cpu = _alarm(alarms, "DatabaseCpu")
    assert (cpu["MetricName"], cpu["Threshold"]) == ("CPUUtilization", 80)
    assert cpu["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    connections = _alarm(alarms, "DatabaseConnections")
    assert connections["Threshold"] == pytest.approx(0.8 * config.db_max_connections)
    storage = _alarm(alarms, "DatabaseFreeStorage")
    assert storage["Threshold"] == pytest.approx(0.1 * config.db_allocated_storage_gib * 1024**3)
    assert storage["ComparisonOperator"] == "LessThanThreshold"
    age = _alarm(alarms, "IteratorAge")
    assert (age["MetricName"], age["Threshold"]) == (
        "GetRecords.IteratorAgeMilliseconds",
        ITERATOR_AGE_MS,
    )
    dlq = _alarm(alarms, "DeadLetters")
    assert (dlq["MetricName"], dlq["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 1)
    assert "DeadLetters" in json.dumps(dlq["Dimensions"])
    api = _alarm(alarms, "Api5xxRate")
    assert api["Threshold"] == 1
    assert "100 * errors / requests" in json.dumps(api["Metrics"])
    loader = _alarm(alarms, "LoaderErrors")
    assert loader["Threshold"] == 1
    filters = synth.resources("AWS::Logs::MetricFilter", "monitoring")
    pattern = next(iter(filters.values()))["Properties"]["FilterPattern"]
    assert pattern == '{ ($.level = "error") || ($.level = "critical") }'


def test_every_alarm_notifies_the_encrypted_topic(synth: Any) -> None:
    alarms = _alarms(synth)
    assert len(alarms) == 21
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"], name
        assert "AlarmsTopic" in json.dumps(alarm["AlarmActions"])
        assert "AlarmsTopic" in json.dumps(alarm["OKActions"])


def test_a_dead_stream_writer_alarms(synth: Any) -> None:
    # No writer, no GetRecords calls, no iterator age at all: that must alarm too.
    age = _alarm(_alarms(synth), "IteratorAge")
    assert age["TreatMissingData"] == "breaching"


def test_kinesis_throughput_and_call_failures_alarm(synth: Any) -> None:
    alarms = _alarms(synth)
    for prefix, metric in (
        ("WriteThroughputExceeded", "WriteProvisionedThroughputExceeded"),
        ("ReadThroughputExceeded", "ReadProvisionedThroughputExceeded"),
    ):
        alarm = _alarm(alarms, prefix)
        assert (alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (metric, "Sum", 1)
    for prefix, metric in (
        ("PutRecordsSuccess", "PutRecords.Success"),
        ("GetRecordsSuccess", "GetRecords.Success"),
    ):
        alarm = _alarm(alarms, prefix)
        assert (alarm["MetricName"], alarm["Statistic"]) == (metric, "Average")
        assert alarm["ComparisonOperator"] == "LessThanThreshold"
        assert alarm["Threshold"] == 0.99


@pytest.mark.parametrize("service", ["IngestApi", "StreamWriter", "DbLoader", "Dashboard"])
def test_every_service_alarms_when_tasks_are_missing(synth: Any, service: str) -> None:
    alarm = _alarm(_alarms(synth), f"TasksBelowDesired{service}")
    rendered = json.dumps(alarm["Metrics"])
    assert "desired - FILL(running, 0)" in rendered
    assert "DesiredTaskCount" in rendered
    assert "RunningTaskCount" in rendered
    assert alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching"


def test_the_cluster_reports_the_task_counts_those_alarms_read(synth: Any) -> None:
    # RunningTaskCount and DesiredTaskCount come from Container Insights: without it both
    # are missing, the alarms above fire for good and the db-loader's backlog per task
    # divides by nothing.
    (cluster,) = synth.resources("AWS::ECS::Cluster", "network").values()
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"][
        "ClusterSettings"
    ]


@pytest.mark.parametrize("service", ["IngestApi", "Dashboard"])
def test_load_balancer_targets_alarm_when_unhealthy_or_gone(synth: Any, service: str) -> None:
    alarms = _alarms(synth)
    unhealthy = _alarm(alarms, f"UnhealthyTargets{service}")
    assert (unhealthy["MetricName"], unhealthy["Threshold"]) == ("UnHealthyHostCount", 1)
    none = _alarm(alarms, f"NoHealthyTarget{service}")
    assert none["MetricName"] == "HealthyHostCount"
    assert none["ComparisonOperator"] == "LessThanThreshold"
    assert none["TreatMissingData"] == "breaching"


def test_load_balancer_5xx_and_queue_age_alarm(synth: Any) -> None:
    alarms = _alarms(synth)
    alb = json.dumps(_alarm(alarms, "Alb5xxRate")["Metrics"])
    assert "HTTPCode_ELB_5XX_Count" in alb
    assert "HTTPCode_Target_5XX_Count" in alb
    assert "RequestCount" in alb
    age = _alarm(alarms, "OldestLandedObject")
    assert age["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert "LandingLanded" in json.dumps(age["Dimensions"])
    assert age["Threshold"] == 600


def test_one_dashboard_shows_the_whole_pipeline(synth: Any) -> None:
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard", "monitoring").values()
    props = dashboard["Properties"]
    assert props["DashboardName"] == f"{synth.config.prefix}-pipeline"
    body = json.dumps(props["DashboardBody"])
    for metric in (
        "5XXError",
        "IncomingRecords",
        "GetRecords.IteratorAgeMilliseconds",
        "RunningTaskCount",
        "ApproximateNumberOfMessagesVisible",
        "ApproximateAgeOfOldestMessage",
        "CPUUtilization",
        "BlockedRequests",
        "UnHealthyHostCount",
    ):
        assert metric in body, metric
    assert "alarm" in body
