"""cdk-nag (AwsSolutions, PCI DSS 3.2.1, NIST 800-53 rev 5) and cfn-lint over the
synthesized templates."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.unit

# W3005 (DependsOn already implied by a Ref/GetAtt): CDK emits such explicit DependsOn
# for custom resources and ALB target groups; redundant ordering, not a defect.
CFN_LINT_IGNORED = ("W3005",)


def _acknowledgements(outdir: Path) -> list[dict[str, Any]]:
    found = []
    for metadata in outdir.glob("*.metadata.json"):
        for entries in json.loads(metadata.read_text()).values():
            for entry in entries:
                if "acknowledg" in entry.get("type", "").lower():
                    found.append(entry)
    return found


def test_nag_packs_pass_with_written_acknowledgements(synth: Any) -> None:
    # Reaching here means app.synth() did not raise: every finding is acknowledged.
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success", plugin["pluginName"]
        assert plugin["violations"] == []


def test_nag_packs_pass_for_production_settings(synth_prod: Any) -> None:
    report = json.loads((synth_prod.outdir / "validation-report.json").read_text())
    assert all(p["conclusion"] == "success" for p in report["pluginReports"])


def test_nag_packs_do_report_an_unacknowledged_finding(tmp_path: Path) -> None:
    # The same plugin wiring must fail an app with a plain queue and bucket, or the
    # passing tests above would prove nothing.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App, Stack, Validations
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_sqs as sqs

    from cardstream_infra.deployment import compliance_packs

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "probe")
    sqs.Queue(stack, "Plain", encryption=sqs.QueueEncryption.UNENCRYPTED)
    s3.Bucket(stack, "Unversioned")
    Validations.of(app).add_plugins(*compliance_packs(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert "AwsSolutions-SQS2" in rules
    # Each pack reports: AWS Solutions, PCI DSS and NIST 800-53 rev 5.
    assert {rule.split("-")[0] for rule in rules} == {
        "AwsSolutions",
        "PCI.DSS.321",
        "NIST.800.53.R5",
    }


def test_every_acknowledgement_has_a_reason(synth: Any) -> None:
    entries = _acknowledgements(synth.outdir)
    assert entries, "no acknowledgement metadata found"
    for entry in entries:
        rendered = json.dumps(entry["data"])
        assert len(rendered) > 60, rendered


def test_cfn_lint_is_clean(synth: Any) -> None:
    from cfnlint.api import ManualArgs, lint_file

    templates = sorted(synth.outdir.glob("*.template.json"))
    assert len(templates) == len(synth.stacks.every())
    problems = []
    for template in templates:
        config = ManualArgs(regions=[synth.config.region], ignore_checks=list(CFN_LINT_IGNORED))
        problems += [f"{template.name}: {match}" for match in lint_file(template, config)]
    assert problems == []
