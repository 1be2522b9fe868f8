"""Template assertions on the public API (authorizer, scopes, throttling) and the alarms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cardstream_infra.components.alarms import ITERATOR_AGE_MS
from cardstream_shared import resource_names as names

pytestmark = pytest.mark.unit


def _routes(synth: Any) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synth.resources("AWS::ApiGatewayV2::Route", "api").values()
    }


def test_every_write_route_requires_a_token_with_the_write_scope(synth: Any) -> None:
    routes = _routes(synth)
    writes = {key: route for key, route in routes.items() if not key.startswith("GET ")}
    assert set(writes) == {
        "POST /v1/transactions",
        "POST /v1/transactions/batch",
        "PATCH /v1/alerts/{alert_id}",
    }
    for key, route in writes.items():
        assert route["AuthorizationType"] == "JWT"
        assert "AuthorizerId" in route
        scope = names.SCOPE_ALERTS_REVIEW if "alerts" in key else names.SCOPE_WRITE
        assert route["AuthorizationScopes"] == [f"cardstream/{scope}"]


def test_reads_require_the_read_scope_and_nothing_else_is_open(synth: Any) -> None:
    routes = _routes(synth)
    read = routes["GET /v1/{proxy+}"]
    assert read["AuthorizationType"] == "JWT"
    assert read["AuthorizationScopes"] == [f"cardstream/{names.SCOPE_READ}"]
    unauthenticated = {key for key, r in routes.items() if r.get("AuthorizationType") != "JWT"}
    # Docs carry no data; the dashboard (its own API) verifies the Cognito token itself.
    assert unauthenticated == {
        "GET /docs",
        "GET /redoc",
        "GET /openapi.json",
        "GET /static/{proxy+}",
        "GET /",
        "GET /{proxy+}",
    }
    assert not any(key.startswith(("ANY", "$default")) for key in routes)


def test_authorizer_trusts_only_the_cognito_pool_and_its_two_clients(synth: Any) -> None:
    authorizers = synth.resources("AWS::ApiGatewayV2::Authorizer", "api")
    assert len(authorizers) == 1
    props = next(iter(authorizers.values()))["Properties"]
    assert props["AuthorizerType"] == "JWT"
    assert props["IdentitySource"] == ["$request.header.Authorization"]
    issuer = json.dumps(props["JwtConfiguration"]["Issuer"])
    assert "cognito-idp" in issuer
    assert "UserPool" in issuer
    audience = props["JwtConfiguration"]["Audience"]
    assert len(audience) == 2
    # Merchants post and read; operators read and review alerts (PATCH /v1/alerts/{id}).
    assert "MerchantClient" in json.dumps(audience[0])
    assert "OperatorClient" in json.dumps(audience[1])


def test_stage_is_throttled_and_access_logged(synth: Any) -> None:
    stages = synth.resources("AWS::ApiGatewayV2::Stage", "api")
    assert len(stages) == 2  # merchant API and dashboard
    for stage in stages.values():
        props = stage["Properties"]
        settings = props["DefaultRouteSettings"]
        assert settings["ThrottlingRateLimit"] == synth.config.api_rate_limit
        assert settings["ThrottlingBurstLimit"] == synth.config.api_burst_limit
        assert "DestinationArn" in props["AccessLogSettings"]
        log_format = props["AccessLogSettings"]["Format"]
        assert "$context.status" in log_format
        assert "Authorization" not in log_format


def test_api_reaches_the_internal_alb_through_a_vpc_link(synth: Any) -> None:
    integrations = synth.resources("AWS::ApiGatewayV2::Integration", "api")
    assert integrations
    for integration in integrations.values():
        props = integration["Properties"]
        assert props["ConnectionType"] == "VPC_LINK"
        assert props["IntegrationType"] == "HTTP_PROXY"
        # The listener ARN of the services stack's internal ALB.
        assert "IngressAlb" in json.dumps(props["IntegrationUri"])
        assert "VpcLink" in json.dumps(props["ConnectionId"])


def test_cognito_resource_server_scopes_and_merchant_client(synth: Any) -> None:
    servers = synth.resources("AWS::Cognito::UserPoolResourceServer", "data")
    scopes = {s["ScopeName"] for server in servers.values() for s in server["Properties"]["Scopes"]}
    assert scopes == {names.SCOPE_WRITE, names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW}
    clients = synth.resources("AWS::Cognito::UserPoolClient", "data")
    assert len(clients) == 2
    for client in clients.values():
        props = client["Properties"]
        assert props["AllowedOAuthFlows"] == ["client_credentials"]
        assert props["GenerateSecret"] is True
    merchant = next(c for key, c in clients.items() if "MerchantClient" in key)
    rendered = json.dumps(merchant["Properties"]["AllowedOAuthScopes"])
    assert names.SCOPE_WRITE in rendered
    assert names.SCOPE_ALERTS_REVIEW not in rendered
    pool = next(iter(synth.resources("AWS::Cognito::UserPool", "data").values()))
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True


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
    assert len(alarms) == 7
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"], name
        assert "AlarmsTopic" in json.dumps(alarm["AlarmActions"])
