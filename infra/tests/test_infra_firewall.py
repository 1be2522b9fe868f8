"""AWS WAF in front of every public route (PCI DSS 4.0.1 6.4.2): what each web ACL holds,
what it is associated with, and where it logs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cardstream_infra.components.public_api import BATCH_PATH
from cardstream_infra.components.web_firewall import (
    WebFirewall,
    WebFirewallProps,
    content_length_above,
)
from cardstream_shared.transaction_input import MAX_RECORD_BYTES

pytestmark = pytest.mark.unit


def _web_acls(synth: Any) -> dict[str, dict[str, Any]]:
    """Stack kind (``api``, ``services``) -> its web ACL's properties."""
    found = {}
    for key, resource in synth.resources("AWS::WAFv2::WebACL").items():
        kind = key.split("/")[0].removeprefix(f"{synth.config.prefix}-")
        assert kind not in found
        found[kind] = resource["Properties"]
    return found


def _rules(acl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["Name"]: rule for rule in acl["Rules"]}


def _managed_groups(acl: dict[str, Any]) -> set[str]:
    return {
        rule["Statement"]["ManagedRuleGroupStatement"]["Name"]
        for rule in acl["Rules"]
        if "ManagedRuleGroupStatement" in rule["Statement"]
    }


def test_the_api_stage_is_behind_the_firewall(synth: Any) -> None:
    associations = [
        a["Properties"]
        for a in synth.resources("AWS::WAFv2::WebACLAssociation", "api").values()
        if "PublicApi" in json.dumps(a["Properties"]["ResourceArn"])
    ]
    assert len(associations) == 1
    rendered = json.dumps(associations[0]["ResourceArn"])
    assert "/restapis/" in rendered
    assert "/stages/" in rendered
    assert "PublicApiDeploymentStagelive" in rendered
    assert "FirewallWebAcl" in json.dumps(associations[0]["WebACLArn"])


def test_the_load_balancer_and_the_sign_in_relay_are_behind_a_firewall_too(synth: Any) -> None:
    associations = [
        json.dumps(a["Properties"]["ResourceArn"])
        for a in synth.resources("AWS::WAFv2::WebACLAssociation", "services").values()
    ]
    assert len(associations) == 2
    assert any("IngressAlb" in arn for arn in associations)
    assert any("TokenRelay" in arn and "/stages/" in arn for arn in associations)


def test_api_firewall_rules(synth: Any) -> None:
    acl = _web_acls(synth)["api"]
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    assert _managed_groups(acl) == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
        "AWSManagedRulesAmazonIpReputationList",
    }
    rules = _rules(acl)
    rate = rules["RatePerSourceAddress"]
    assert rate["Statement"]["RateBasedStatement"] == {
        "AggregateKeyType": "IP",
        "EvaluationWindowSec": 300,
        "Limit": synth.config.waf_requests_per_source_per_5_minutes,
    }
    assert rate["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 429
    # API Gateway lets WAF read the first 64 KB of a body (16 KB by default).
    assert acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"] == {
        "DefaultSizeInspectionLimit": "KB_64"
    }
    priorities = [rule["Priority"] for rule in acl["Rules"]]
    assert len(set(priorities)) == len(priorities)


def test_load_balancer_firewall_has_no_rule_keyed_on_the_source_address(synth: Any) -> None:
    # Behind the VPC link every request comes from the link's addresses: a rate limit per
    # address would throttle all merchants together, a reputation list would see none.
    acl = _web_acls(synth)["services"]
    assert _managed_groups(acl) == {
        "AWSManagedRulesCommonRuleSet",
        "AWSManagedRulesKnownBadInputsRuleSet",
    }
    assert "RatePerSourceAddress" not in _rules(acl)


@pytest.mark.parametrize("kind", ["api", "services"])
def test_body_size_limit_is_the_apis_own(
    synth: Any, service_configs: dict[str, Any], kind: str
) -> None:
    acl = _web_acls(synth)[kind]
    rules = _rules(acl)
    statement = rules["BodyOverApiLimit"]["Statement"]["RegexMatchStatement"]
    assert statement["FieldToMatch"] == {"SingleHeader": {"Name": "content-length"}}
    limit = synth.config.max_body_bytes
    assert statement["RegexString"] == content_length_above(limit)
    assert rules["BodyOverApiLimit"]["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    # The ingest-api is told the same limit, which is also its own default.
    assert service_configs["ingest-api"].default("max_body_bytes") == limit
    # The common rule set refuses bodies over 8 KB: counted only, or batches could not pass.
    common = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"]
    assert common["RuleActionOverrides"] == [
        {"ActionToUse": {"Count": {}}, "Name": "SizeRestrictions_BODY"}
    ]


def test_one_record_bodies_are_held_to_the_record_limit_on_the_body_itself(synth: Any) -> None:
    # The ingest-api refuses a single-record body over MAX_RECORD_BYTES (every route but the
    # batch route); the firewall measures the body itself, so neither a chunked body nor a
    # false Content-Length carries more past it.
    acl = _web_acls(synth)["api"]
    rule = _rules(acl)["BodyOverRecordLimit"]
    assert rule["Action"]["Block"]["CustomResponse"]["ResponseCode"] == 413
    over, not_batch = rule["Statement"]["AndStatement"]["Statements"]
    size = over["SizeConstraintStatement"]
    assert size["FieldToMatch"] == {"Body": {"OversizeHandling": "MATCH"}}
    assert (size["ComparisonOperator"], size["Size"]) == ("GT", MAX_RECORD_BYTES)
    exempt = not_batch["NotStatement"]["Statement"]["ByteMatchStatement"]
    assert exempt["FieldToMatch"] == {"UriPath": {}}
    assert (exempt["PositionalConstraint"], exempt["SearchString"]) == ("EXACTLY", BATCH_PATH)
    # WAF reads every byte up to the limit: a longer body counts as oversize, and refused.
    assert acl["AssociationConfig"]["RequestBody"]["API_GATEWAY"] == {
        "DefaultSizeInspectionLimit": "KB_64"
    }
    assert MAX_RECORD_BYTES <= 64 * 1024
    # An ALB shows WAF 8 KB of a body: no body rule there but the declared length.
    assert "BodyOverRecordLimit" not in _rules(_web_acls(synth)["services"])


def test_a_record_limit_past_what_waf_reads_is_refused() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_logs as logs

    stack = Stack(App(), "probe")
    props = {
        "name": "probe",
        "max_body_bytes": 8 << 20,
        "requests_per_source_per_5_minutes": None,
        "ip_reputation": False,
        "redacted_headers": ("authorization",),
        "log_key": kms.Key(stack, "Key"),
        "log_retention": logs.RetentionDays.ONE_YEAR,
    }
    for inspection, record_bytes in ((True, 64 * 1024 + 1), (False, 1024)):
        with pytest.raises(ValueError, match="max_record_bytes"):
            WebFirewall(
                stack,
                f"Firewall{inspection}",
                props=WebFirewallProps(
                    **props, api_gateway_body_inspection=inspection, max_record_bytes=record_bytes
                ),
            )


def test_blocked_callers_get_problem_json(synth: Any) -> None:
    for acl in _web_acls(synth).values():
        bodies = acl["CustomResponseBodies"]
        for rule in acl["Rules"]:
            block = rule.get("Action", {}).get("Block")
            if block:
                key = block["CustomResponse"]["CustomResponseBodyKey"]
                problem = json.loads(bodies[key]["Content"])
                assert problem["status"] == block["CustomResponse"]["ResponseCode"]
                assert problem["title"]


@pytest.mark.parametrize("kind", ["api", "services"])
def test_firewall_logs_are_retained_encrypted_and_redact_credentials(synth: Any, kind: str) -> None:
    (logging,) = synth.resources("AWS::WAFv2::LoggingConfiguration", kind).values()
    props = logging["Properties"]
    redacted = {field["SingleHeader"]["Name"] for field in props["RedactedFields"]}
    assert "authorization" in redacted
    if kind == "services":
        assert "cookie" in redacted  # the dashboard's session
    (destination,) = props["LogDestinationConfigs"]
    rendered = json.dumps(destination)
    name = f"aws-waf-logs-{synth.config.prefix}-{'api' if kind == 'api' else 'alb'}"
    assert f"log-group:{name}" in rendered
    assert not rendered.endswith(':*"]]}')
    groups = [
        g["Properties"]
        for g in synth.resources("AWS::Logs::LogGroup", kind).values()
        if g["Properties"].get("LogGroupName") == name
    ]
    assert len(groups) == 1
    assert "KmsKeyId" in groups[0]
    assert groups[0]["RetentionInDays"] >= 365


def test_web_acl_names_carry_the_environment(synth: Any, synth_prod: Any) -> None:
    names = {acl["Name"] for variant in (synth, synth_prod) for acl in _web_acls(variant).values()}
    assert names == {
        "cardstream-dev-api",
        "cardstream-dev-alb",
        "cardstream-prod-api",
        "cardstream-prod-alb",
    }


@pytest.mark.parametrize("limit", [1024, 8 * 1024 * 1024, 9_999_999, 10_000_000, 1_900_000])
def test_content_length_pattern_matches_exactly_the_lengths_above_the_limit(limit: int) -> None:
    pattern = re.compile(content_length_above(limit))
    probes = {0, 1, limit - 1, limit, limit + 1, limit * 10, limit // 10, 10 ** len(str(limit))}
    probes |= {limit + 10**k for k in range(len(str(limit)))}
    probes |= {limit - 10**k for k in range(len(str(limit))) if limit - 10**k >= 0}
    for value in sorted(probes):
        assert bool(pattern.match(str(value))) is (value > limit), value
    assert pattern.match(f"000{limit + 1}")
    assert not pattern.match(f"000{limit}")
    assert pattern.match(f" {limit + 1} ")
    assert not pattern.match("")
    assert not pattern.match("abc")
