"""Rule configuration: shipped defaults, key-by-key overrides, refusal of bad files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from cardstream_monitoring.engine import build_statement
from cardstream_monitoring.rules import RULE_NAMES, RuleConfigError, load_rules
from cardstream_monitoring.settings import RulesSettings
from cardstream_shared.settings import load_settings

pytestmark = pytest.mark.unit


def test_defaults_enable_every_typology() -> None:
    rules = load_rules()
    assert rules.enabled() == list(RULE_NAMES)
    assert rules.structuring.band_floor == Decimal("9000.00")
    assert rules.night_high_value.hours == (0, 1, 2, 3, 22, 23)


def test_override_file_replaces_only_the_keys_it_names(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        "[rules.velocity]\nmin_count = 9\n"
        "[rules.structuring]\nenabled = false\n"
        "[rules.night_high_value.min_amount]\nmisc_net = 900.00\n"
    )
    rules = load_rules(path)
    assert rules.velocity.min_count == 9
    assert rules.velocity.window_minutes == load_rules().velocity.window_minutes
    assert "structuring" not in rules.enabled()
    # A category table is replaced whole: the override lists the categories it wants.
    assert rules.night_high_value.min_amount == {"misc_net": Decimal("900.00")}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[rules.velocity]\nmin_count = 1\n", "rules.velocity.min_count"),
        ("[rules.velocity]\nwindow = 5\n", "rules.velocity.window"),
        ("[rules.teleport]\nenabled = true\n", "rules.teleport"),
        ("[rules.amount_spike]\nseverity = 'urgent'\n", "rules.amount_spike.severity"),
        ("[rules.night_high_value]\nhours = [25]\n", "rules.night_high_value.hours"),
        ("[thresholds]\nx = 1\n", "unknown top-level"),
        ("[rules.velocity\n", "not valid TOML"),
    ],
)
def test_bad_rule_files_are_refused_naming_the_key(text: str, where: str) -> None:
    with pytest.raises(RuleConfigError, match=where.replace(".", r"\.")):
        load_rules(override_text=text)


def test_unreadable_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleConfigError, match="cannot be read"):
        load_rules(tmp_path / "missing.toml")


def test_all_rules_disabled_builds_no_statement() -> None:
    text = "".join(f"[rules.{name}]\nenabled = false\n" for name in RULE_NAMES)
    assert build_statement(load_rules(override_text=text)) is None


def test_thresholds_travel_as_parameters_not_sql() -> None:
    built = build_statement(load_rules(override_text="[rules.structuring]\nthreshold = 12345.67\n"))
    assert built is not None
    sql, params = built
    assert "12345.67" not in sql
    assert Decimal("12345.67") in params


def test_a_bad_rules_path_stops_the_loader_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[rules.velocity]\nmin_count = 0\n")
    monkeypatch.setenv("LOADER_ENVIRONMENT", "test")
    monkeypatch.setenv("LOADER_RULES_PATH", str(path))
    with pytest.raises(SystemExit) as exited:
        load_settings(RulesSettings)
    assert exited.value.code == 2
    assert "LOADER_RULES_PATH" in capsys.readouterr().err


def test_a_webhook_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADER_ENVIRONMENT", "test")
    monkeypatch.setenv("LOADER_ALERT_WEBHOOK_URL", "https://hooks.example.com/alerts")
    with pytest.raises(SystemExit):
        load_settings(RulesSettings)
    monkeypatch.setenv("LOADER_ALERT_WEBHOOK_SECRET", "s3cr3t-value-for-signing")
    assert str(load_settings(RulesSettings).alert_webhook_url) == "https://hooks.example.com/alerts"
