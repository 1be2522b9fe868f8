"""AWS WAF web ACLs: managed rule groups, a rate limit per source address, the API's body
size limit, and logging to an encrypted, retained log group with credentials redacted.

PCI DSS 4.0.1 requirement 6.4.2 asks for an automated solution in front of public-facing
web applications that detects and blocks web attacks; docs/deploy.md says where each web
ACL sits and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

# AWS managed rule groups (vendor AWS): OWASP-style common attacks, request patterns known to
# exploit vulnerabilities (Log4j, Java deserialization ...), and addresses Amazon threat
# intelligence lists as bots or attackers.
COMMON_RULES = "AWSManagedRulesCommonRuleSet"
KNOWN_BAD_INPUTS = "AWSManagedRulesKnownBadInputsRuleSet"
IP_REPUTATION = "AWSManagedRulesAmazonIpReputationList"
# The common rule set blocks bodies over 8 KB; the API takes batches up to its own limit,
# which the BodyOverApiLimit rule enforces instead, so this one rule only counts.
COMMON_RULES_COUNTED = ("SizeRestrictions_BODY",)
# The body size AWS WAF reads at API Gateway (KB_64, the largest setting: 64 x 1,024 bytes).
API_GATEWAY_INSPECTED_BODY_BYTES = 64 * 1024

# What a blocked caller receives: problem+json fields, like every refusal of the API.
_PROBLEMS: dict[str, tuple[int, str, str]] = {
    "blocked": (403, "Forbidden", "The request was blocked by the web application firewall."),
    "rate": (429, "Too Many Requests", "Too many requests from this address; retry later."),
    "size": (413, "Content Too Large", "The request body is larger than the API accepts."),
}


def content_length_above(limit: int) -> str:
    """A regular expression matching a decimal ``Content-Length`` strictly above ``limit``.

    AWS WAF compares sizes only of the body part it inspects (at most 64 KB), so the API's
    own limit (megabytes) is enforced on the declared length, as a pattern over its digits:
    any longer number, or a number of the same length that is larger at its first
    differing digit.
    """
    digits = str(limit)
    alternatives = [f"[1-9][0-9]{{{len(digits)},}}"]
    for index, digit in enumerate(digits):
        if digit == "9":
            continue
        higher = f"[{int(digit) + 1}-9]" if digit != "8" else "9"
        rest = len(digits) - index - 1
        alternatives.append(digits[:index] + higher + (f"[0-9]{{{rest}}}" if rest else ""))
    return rf"^\s*0*({'|'.join(alternatives)})\s*$"


@dataclass(frozen=True, kw_only=True)
class WebFirewallProps:
    """Props of :class:`WebFirewall`.

    Attributes:
        name: web ACL name (unique in the account and region: carries the environment).
        max_body_bytes: the largest body the protected application accepts.
        requests_per_source_per_5_minutes: rate limit per client address (``None``: no rate
            rule, for a resource whose source address is a proxy rather than the client).
        ip_reputation: block addresses on Amazon's IP reputation list (only meaningful where
            the firewall sees the client's own address).
        api_gateway_body_inspection: inspect the first 64 KB of bodies at API Gateway
            (the default is 16 KB; an ALB always inspects 8 KB).
        max_record_bytes: the largest body the application accepts on every route but the
            ones in ``batch_paths`` (one record), measured on the body itself; needs
            ``api_gateway_body_inspection`` and at most 64 KB. ``None``: no such rule.
        batch_paths: the routes whose bodies may be larger (up to ``max_body_bytes``).
        redacted_headers: headers replaced by ``REDACTED`` in the firewall's logs.
        log_key: KMS key of the log group.
        log_retention: log group retention.
    """

    name: str
    max_body_bytes: int
    requests_per_source_per_5_minutes: int | None
    ip_reputation: bool
    api_gateway_body_inspection: bool
    redacted_headers: Sequence[str]
    log_key: kms.IKey
    log_retention: logs.RetentionDays
    max_record_bytes: int | None = None
    batch_paths: Sequence[str] = ()


# singleHeader is free-form JSON in CDK's L1 types: its keys pass through as written, so
# they are spelled as CloudFormation spells them.


def _visibility(metric: str) -> dict[str, Any]:
    return {
        "cloudWatchMetricsEnabled": True,
        "metricName": metric,
        "sampledRequestsEnabled": True,
    }


def _block(problem: str) -> dict[str, Any]:
    status, _, _ = _PROBLEMS[problem]
    return {"block": {"customResponse": {"responseCode": status, "customResponseBodyKey": problem}}}


def _managed(name: str, priority: int, counted: Sequence[str] = ()) -> dict[str, Any]:
    statement: dict[str, Any] = {"vendorName": "AWS", "name": name}
    if counted:
        statement["ruleActionOverrides"] = [
            {"name": rule, "actionToUse": {"count": {}}} for rule in counted
        ]
    return {
        "name": name,
        "priority": priority,
        "overrideAction": {"none": {}},
        "statement": {"managedRuleGroupStatement": statement},
        "visibilityConfig": _visibility(name),
    }


def _record_limit(priority: int, max_bytes: int, batch_paths: Sequence[str]) -> dict[str, Any]:
    """Refuse a body over ``max_bytes`` on every route but the batch routes, on the body
    as it arrives (chunked or with a false Content-Length alike): a body longer than WAF
    reads counts as over the limit."""
    over: dict[str, Any] = {
        "sizeConstraintStatement": {
            "fieldToMatch": {"body": {"oversizeHandling": "MATCH"}},
            "comparisonOperator": "GT",
            "size": max_bytes,
            "textTransformations": [{"priority": 0, "type": "NONE"}],
        }
    }
    # The path exactly as sent: an encoded spelling of a batch path gets the lower limit.
    batch = [
        {
            "byteMatchStatement": {
                "fieldToMatch": {"uriPath": {}},
                "positionalConstraint": "EXACTLY",
                "searchString": path,
                "textTransformations": [{"priority": 0, "type": "NONE"}],
            }
        }
        for path in batch_paths
    ]
    statement = over
    if batch:
        not_batch = {"notStatement": {"statement": _any_of(batch)}}
        statement = {"andStatement": {"statements": [over, not_batch]}}
    return {
        "name": "BodyOverRecordLimit",
        "priority": priority,
        "action": _block("size"),
        "statement": statement,
        "visibilityConfig": _visibility("BodyOverRecordLimit"),
    }


def _any_of(statements: list[dict[str, Any]]) -> dict[str, Any]:
    # WAF's orStatement needs two statements at least.
    return statements[0] if len(statements) == 1 else {"orStatement": {"statements": statements}}


class WebFirewall(Construct):
    """A regional web ACL with its log group; ``protect`` associates it with a resource."""

    def __init__(self, scope: Construct, construct_id: str, *, props: WebFirewallProps) -> None:
        super().__init__(scope, construct_id)
        if props.max_record_bytes is not None and not (
            props.api_gateway_body_inspection
            and props.max_record_bytes <= API_GATEWAY_INSPECTED_BODY_BYTES
        ):
            # Past what WAF reads, every body would count as oversize and be refused.
            raise ValueError("max_record_bytes needs API Gateway body inspection, up to 64 KB")
        self.name = props.name
        rules: list[dict[str, Any]] = []
        if props.ip_reputation:
            rules.append(_managed(IP_REPUTATION, len(rules)))
        if props.requests_per_source_per_5_minutes is not None:
            rules.append(
                {
                    "name": "RatePerSourceAddress",
                    "priority": len(rules),
                    "action": _block("rate"),
                    "statement": {
                        "rateBasedStatement": {
                            "limit": props.requests_per_source_per_5_minutes,
                            "evaluationWindowSec": 300,
                            "aggregateKeyType": "IP",
                        }
                    },
                    "visibilityConfig": _visibility("RatePerSourceAddress"),
                }
            )
        rules.append(
            {
                "name": "BodyOverApiLimit",
                "priority": len(rules),
                "action": _block("size"),
                "statement": {
                    "regexMatchStatement": {
                        "regexString": content_length_above(props.max_body_bytes),
                        "fieldToMatch": {"singleHeader": {"Name": "content-length"}},
                        "textTransformations": [{"priority": 0, "type": "NONE"}],
                    }
                },
                "visibilityConfig": _visibility("BodyOverApiLimit"),
            }
        )
        if props.max_record_bytes is not None:
            rules.append(_record_limit(len(rules), props.max_record_bytes, props.batch_paths))
        rules.append(_managed(COMMON_RULES, len(rules), COMMON_RULES_COUNTED))
        rules.append(_managed(KNOWN_BAD_INPUTS, len(rules)))
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=props.name,
            scope="REGIONAL",
            default_action={"allow": {}},
            rules=rules,
            custom_response_bodies={
                key: {
                    "contentType": "APPLICATION_JSON",
                    "content": json.dumps(
                        {"type": "about:blank", "title": title, "status": status, "detail": detail}
                    ),
                }
                for key, (status, title, detail) in _PROBLEMS.items()
            },
            association_config=(
                {"requestBody": {"API_GATEWAY": {"defaultSizeInspectionLimit": "KB_64"}}}
                if props.api_gateway_body_inspection
                else None
            ),
            visibility_config=_visibility(props.name),
        )
        # AWS WAF delivers only to log groups whose name starts with aws-waf-logs-.
        log_group_name = f"aws-waf-logs-{props.name}"
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name,
            encryption_key=props.log_key,
            retention=props.log_retention,
            removal_policy=RemovalPolicy.RETAIN,
        )
        logging = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            # The ARN without the ":*" suffix LogGroup.log_group_arn carries.
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                {"singleHeader": {"Name": header}} for header in props.redacted_headers
            ],
        )
        logging.node.add_dependency(self.log_group)
        self.rule_names = [rule["name"] for rule in rules]

    def protect(self, construct_id: str, resource_arn: str) -> wafv2.CfnWebACLAssociation:
        """Put the web ACL in front of a resource (an ALB or an API Gateway stage)."""
        return wafv2.CfnWebACLAssociation(
            self, construct_id, resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
