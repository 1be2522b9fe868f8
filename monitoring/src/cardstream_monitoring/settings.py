"""Monitoring settings of the db-loader process (prefix ``LOADER_``, like the loader's own).

A class of their own, beside the loader's ``LoaderSettings``, so that the rules can be read
by ``cardstream evaluate`` and the benchmark without a queue URL; the loader reads both
classes from the same environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from cardstream_monitoring.rules import RuleConfigError, Severity, load_rules
from cardstream_shared.settings import ServiceSettings


class RulesSettings(ServiceSettings):
    """``LOADER_RULES_*`` and ``LOADER_ALERT_WEBHOOK_*``."""

    model_config = SettingsConfigDict(
        env_prefix="LOADER_", extra="ignore", frozen=True, validate_default=True
    )

    # Off switch for the whole engine; single rules are switched in the rule file.
    rules_enabled: bool = True
    # A TOML file overriding default_rules.toml key by key (docs/monitoring.md).
    rules_path: Path | None = None

    # High-severity alerts are pushed to this URL, signed with the secret (HMAC-SHA256).
    alert_webhook_url: HttpUrl | None = None
    alert_webhook_secret: SecretStr | None = None
    alert_notify_min_severity: Severity = "high"
    alert_webhook_max_attempts: int = Field(default=5, ge=1, le=20)
    alert_webhook_backoff_base_s: float = Field(default=0.2, gt=0)
    alert_webhook_backoff_max_s: float = Field(default=10.0, gt=0)
    alert_webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    alert_webhook_queue_size: int = Field(default=1_000, ge=1, le=1_000_000)
    alert_webhook_workers: int = Field(default=2, ge=1, le=32)

    @field_validator("rules_path")
    @classmethod
    def _rules_file_is_valid(cls, value: Path | None) -> Path | None:
        # Checked with the other settings, so a bad rule file stops the loader at start-up
        # with LOADER_RULES_PATH named, like any other invalid variable.
        if value is not None:
            try:
                load_rules(value)
            except RuleConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _webhook_is_signed(self) -> RulesSettings:
        if self.alert_webhook_url is not None and (
            self.alert_webhook_secret is None or not self.alert_webhook_secret.get_secret_value()
        ):
            # An unsigned alert feed would let anyone who can reach the receiver forge alerts.
            raise ValueError("alert_webhook_url needs alert_webhook_secret")
        if self.alert_webhook_backoff_base_s > self.alert_webhook_backoff_max_s:
            raise ValueError("alert_webhook_backoff_base_s must be <= alert_webhook_backoff_max_s")
        return self
