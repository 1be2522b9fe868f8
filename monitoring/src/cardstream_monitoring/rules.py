"""Rule configuration: the shipped defaults (``default_rules.toml``) plus an optional override.

Every threshold, window, category list and on/off switch of a rule lives here, validated at
start-up like the rest of the settings: a rule file with an unknown rule, an unknown field or
an impossible value refuses to load and says where. The override file has the same shape as
the defaults and replaces them key by key, so an operator can retune one figure without
restating the rest.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Severity = Literal["low", "medium", "high"]
SEVERITIES: Final = ("low", "medium", "high")

DEFAULT_RULES_RESOURCE: Final = "default_rules.toml"


class RuleConfigError(ValueError):
    """The rule file cannot be read or does not describe valid rules."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity


class AmountSpike(_Rule):
    """Amount at least ``multiple`` times the card's mean over its recent history."""

    history_days: int = Field(ge=1, le=3660)
    min_history: int = Field(ge=1, le=10_000)
    multiple: float = Field(gt=1)
    min_amount: Decimal = Field(ge=0)


class Velocity(_Rule):
    """At least ``min_count`` purchases at ``min_merchants`` merchants within the window."""

    window_minutes: int = Field(ge=1, le=7 * 24 * 60)
    min_count: int = Field(ge=2, le=10_000)
    min_merchants: int = Field(ge=1, le=10_000)


class CardTesting(_Rule):
    """At least ``min_count`` amounts of at most ``max_amount`` at several merchants."""

    window_minutes: int = Field(ge=1, le=24 * 60)
    max_amount: Decimal = Field(gt=0)
    min_count: int = Field(ge=2, le=10_000)
    min_merchants: int = Field(ge=1, le=10_000)


class NightHighValue(_Rule):
    """An amount above the category's limit at one of ``hours`` (local time of the data)."""

    hours: tuple[int, ...] = Field(min_length=1)
    min_amount: dict[str, Decimal] = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _hours_of_day(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h < 0 or h > 23 for h in value):
            raise ValueError("hours are 0-23")
        return tuple(sorted(set(value)))

    @field_validator("min_amount")
    @classmethod
    def _non_negative(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        if any(amount < 0 for amount in value.values()):
            raise ValueError("amounts must be >= 0")
        return value


class FarFromHome(_Rule):
    """Merchant at least ``min_km`` from home and ``habit_multiple`` times the card's usual."""

    min_km: float = Field(gt=0)
    history_days: int = Field(ge=1, le=3660)
    min_history: int = Field(ge=1, le=10_000)
    habit_multiple: float = Field(ge=1)


class ImpossibleTravel(_Rule):
    """Two purchases ``min_km`` or more apart, faster than ``max_speed_kmh`` between them."""

    lookback_hours: int = Field(ge=1, le=7 * 24)
    min_km: float = Field(gt=0)
    max_speed_kmh: float = Field(gt=0)


class Structuring(_Rule):
    """``min_count`` amounts within ``band_percent`` under ``threshold`` within the window."""

    threshold: Decimal = Field(gt=0)
    band_percent: float = Field(gt=0, lt=100)
    window_hours: int = Field(ge=1, le=90 * 24)
    min_count: int = Field(ge=2, le=10_000)

    @property
    def band_floor(self) -> Decimal:
        """Smallest amount that counts as "just under" the threshold."""
        fraction = Decimal(str(self.band_percent)) / Decimal(100)
        return (self.threshold * (1 - fraction)).quantize(Decimal("0.01"))


class Rules(BaseModel):
    """The full rule set; every rule is present (the defaults fill what an override omits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    amount_spike: AmountSpike
    velocity: Velocity
    card_testing: CardTesting
    night_high_value: NightHighValue
    far_from_home: FarFromHome
    impossible_travel: ImpossibleTravel
    structuring: Structuring

    def enabled(self) -> list[str]:
        """Names of the enabled rules, in declaration order."""
        return [name for name in type(self).model_fields if getattr(self, name).enabled]


RULE_NAMES: Final = tuple(Rules.model_fields)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            # Category limits are a whole mapping: an override lists the categories it wants.
            merged[key] = value if key == "min_amount" else _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse(text: str, origin: str) -> dict[str, Any]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleConfigError(f"{origin}: not valid TOML ({exc})") from None
    unknown = set(document) - {"rules"}
    if unknown:
        raise RuleConfigError(f"{origin}: unknown top-level key(s) {sorted(unknown)}")
    rules = document.get("rules", {})
    if not isinstance(rules, dict):
        raise RuleConfigError(f"{origin}: [rules] must be a table")
    return rules


def default_rules_text() -> str:
    """The shipped defaults, as TOML text."""
    return (
        resources.files("cardstream_monitoring").joinpath(DEFAULT_RULES_RESOURCE).read_text("utf-8")
    )


def load_rules(override_path: Path | None = None, *, override_text: str | None = None) -> Rules:
    """The defaults, with ``override_path`` (or ``override_text``) applied on top."""
    data = _parse(default_rules_text(), DEFAULT_RULES_RESOURCE)
    origin = DEFAULT_RULES_RESOURCE
    if override_path is not None:
        try:
            override_text = override_path.read_text("utf-8")
        except OSError as exc:
            raise RuleConfigError(f"{override_path}: cannot be read ({exc.strerror})") from None
        origin = str(override_path)
    if override_text is not None:
        origin = origin if override_path is not None else "override"
        data = _merge(data, _parse(override_text, origin))
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"rules.{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in exc.errors(include_input=False, include_url=False)
        )
        raise RuleConfigError(f"{origin}: {problems}") from None
