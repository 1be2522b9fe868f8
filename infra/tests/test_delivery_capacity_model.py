"""The capacity model (bench/capacity_model.py): docs/cost.md shows its output, it reads the
published benchmark figures, and its task sizes are the ones the CDK app deploys."""

from __future__ import annotations

import copy
import importlib.util
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "capacity_model.py"
BEGIN, END = "<!-- capacity-model:begin -->\n", "<!-- capacity-model:end -->"


def _model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capacity_model", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses resolve their annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _figures() -> dict[str, Any]:
    return tomllib.loads((REPO / "bench" / "figures.toml").read_text())


def test_the_cost_doc_shows_what_the_model_prints() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    doc = (REPO / "docs" / "cost.md").read_text()
    shown = doc[doc.index(BEGIN) + len(BEGIN) : doc.index(END)]
    assert shown == result.stdout, "run bench/capacity_model.py and paste it into docs/cost.md"
    rows = [line for line in result.stdout.splitlines() if re.match(r"^\| [\d,]+ \|", line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 100", "| 1,000", "| 5,000", "| 20,000"]


def test_the_table_moves_when_a_figure_moves() -> None:
    model = _model()
    from cardstream_infra.config import DeploymentConfig

    figures, prices = _figures(), model.load_toml("prices.toml")
    before = model.render(figures, prices, DeploymentConfig())
    slower = copy.deepcopy(figures)
    slower["db_loader"]["postgres_cpu_seconds"] *= 4
    assert model.render(slower, prices, DeploymentConfig()) != before
    larger = copy.deepcopy(figures)
    larger["db_loader"]["storage"]["index_bytes_per_row"] //= 10
    assert model.render(larger, prices, DeploymentConfig()) != before


def test_every_figure_is_dated_and_published_in_the_benchmarks_page() -> None:
    figures = _figures()
    for section in ("ingest_api", "stream_writer", "db_loader", "monitoring_rules", "record"):
        assert "measured" in figures[section], section
    assert "measured" in figures["db_loader"]["storage"]
    page = (REPO / "docs" / "benchmarks.md").read_text()
    published = [
        figures["ingest_api"]["batched_records_per_cpu_second"],
        figures["ingest_api"]["single_requests_per_cpu_second"],
        figures["stream_writer"]["records_per_cpu_second"],
        figures["db_loader"]["rows"],
        *figures["db_loader"]["storage"].values(),
        figures["record"]["envelope_bytes"],
    ]
    for value in published:
        if isinstance(value, int):
            assert f"{value:,}" in page, value
    loader = figures["db_loader"]
    assert f"{loader['loader_cpu_seconds']} + {loader['postgres_cpu_seconds']}" in page
    assert f"{figures['monitoring_rules']['load_transaction_ratio']:.1%}".replace("%", " %") in page


def test_task_sizes_and_floors_are_the_deployed_ones(synth: Any) -> None:
    model = _model()
    definitions = synth.resources("AWS::ECS::TaskDefinition", "services")
    sizes = {}
    for definition in definitions.values():
        properties = definition["Properties"]
        name = properties["ContainerDefinitions"][0]["Name"]
        sizes[name] = (int(properties["Cpu"]) / 1024, int(properties["Memory"]) / 1024)
    assert sizes == {name: (t.vcpu, t.memory_gb) for name, t in model.TASKS.items()}
    targets = synth.resources("AWS::ApplicationAutoScaling::ScalableTarget", "services")
    floors = {}
    for target in targets.values():
        resource = str(target["Properties"]["ResourceId"])
        for name in model.TASKS:
            if f"cardstream-{name}" in resource or name.title().replace("-", "") in resource:
                floors[name] = target["Properties"]["MinCapacity"]
    assert floors == {name: t.floor for name, t in model.TASKS.items()}


def test_endpoints_and_firewalls_priced_are_the_deployed_ones(synth: Any) -> None:
    model = _model()
    endpoints = [
        e
        for e in synth.resources("AWS::EC2::VPCEndpoint", "network").values()
        if e["Properties"].get("VpcEndpointType") == "Interface"
    ]
    assert len(endpoints) == model.ENDPOINTS
    acls = synth.resources("AWS::WAFv2::WebACL").values()
    assert len(acls) == model.WEB_ACLS
    assert sum(len(acl["Properties"]["Rules"]) for acl in acls) == model.WEB_ACL_RULES
    # Merchants' requests are priced as the REST API the api stack deploys (a web ACL
    # cannot sit in front of an HTTP API).
    assert synth.resources("AWS::ApiGateway::RestApi", "api")
    assert not synth.resources("AWS::ApiGatewayV2::Api", "api")
    assert (
        "rest_api_million"
        in tomllib.loads((REPO / "bench" / "prices.toml").read_text())["requests"]
    )
