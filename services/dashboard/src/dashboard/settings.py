"""dashboard configuration: every ``DASHBOARD_*`` environment variable, typed and validated."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from cardstream_shared import resource_names as names
from cardstream_shared.settings import DatabaseSettings, TokenVerifierSettings
from dashboard.signin import SignInClient


class DashboardSettings(TokenVerifierSettings, DatabaseSettings):
    """Settings of one dashboard process (prefix ``DASHBOARD_``)."""

    model_config = SettingsConfigDict(
        env_prefix="DASHBOARD_", extra="ignore", frozen=True, validate_default=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8050, ge=0, le=65535)
    # HTTPS with a certificate made at start-up (behind the ALB in AWS); plain HTTP locally.
    tls_self_signed: bool = False

    # The dashboard role: SELECT on the dashboard views only (docs/data-model.md).
    database_secret_id: str | None = names.DB_DASHBOARD_SECRET
    pool_min_size: int = Field(default=0, ge=0, le=20)
    pool_max_size: int = Field(default=3, ge=1, le=20)
    db_statement_timeout_s: float = Field(default=15.0, gt=0, le=300)
    # asyncpg waits 60 s for a connection by default: too long for a page that refreshes.
    db_connect_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # None: Secure outside the local and test environments (a browser drops a Secure cookie
    # set over plain http, which is how the local stack serves the page).
    cookie_secure: bool | None = None

    # Sign-in (dashboard.signin): authorization code with PKCE at the identity provider
    # (Cognito's hosted UI in AWS, the local stack's sign-in server locally). The token
    # endpoint is called from this process (in AWS through the private token relay).
    signin_authorize_url: str | None = None
    signin_token_url: str | None = None
    signin_client_id: str | None = None
    signin_scopes: str = f"{names.SCOPE_READ} {names.SCOPE_ALL_TENANTS}"
    # The provider's logout endpoint (Cognito's /logout; the browser goes there after
    # signing out, and comes back to PUBLIC_URL/). Unset: signing out ends the dashboard's
    # session only.
    signout_url: str | None = None
    # The dashboard's address as the browser sees it (the callback URL the provider knows);
    # unset: the address of the request.
    public_url: str | None = None

    # Pipeline health sources; each is optional and shown as "unknown" when unset.
    queue_url: str | None = None
    dlq_url: str | None = None
    stream_name: str | None = names.STREAM_NAME
    bucket: str | None = names.LANDING_BUCKET
    # Comma-separated base URLs of stream-writer processes serving /metrics. Unset: the lag
    # comes from CloudWatch (Kinesis GetRecords.IteratorAgeMilliseconds), if enabled.
    writer_metrics_urls: str = ""
    cloudwatch_stream_lag: bool = True
    probe_timeout_s: float = Field(default=2.0, gt=0, le=30)

    # What the page shows and how often it asks for it.
    refresh_interval_s: float = Field(default=5.0, ge=1, le=3600)
    # Concurrent viewers within this time share one database snapshot.
    snapshot_ttl_s: float = Field(default=2.0, ge=0, le=3600)
    # The next snapshot waits at least this many times as long as the last one took, so the
    # database spends at most 1 / (1 + factor) of its time on the dashboard.
    snapshot_hold_factor: float = Field(default=3.0, ge=0, le=100)
    map_max_locations: int = Field(default=3000, ge=10, le=100_000)
    hourly_trend_hours: int = Field(default=48, ge=1, le=24 * 90)
    daily_trend_days: int = Field(default=120, ge=1, le=3650)
    freshness_window_minutes: int = Field(default=60, ge=1, le=24 * 60)

    shutdown_grace_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> DashboardSettings:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must be <= pool_max_size")
        if self.database_url is None and not self.database_secret_id:
            raise ValueError("set database_secret_id or database_url")
        signin = {
            "signin_authorize_url": self.signin_authorize_url,
            "signin_token_url": self.signin_token_url,
            "signin_client_id": self.signin_client_id,
        }
        unset = [self.env_name(name) for name, value in signin.items() if not value]
        if unset and len(unset) < len(signin):
            raise ValueError(f"set {', '.join(unset)} too: sign-in needs all three")
        if not self.is_local:
            if unset:
                raise ValueError(f"set {', '.join(unset)}: operators sign in through them")
            urls = {
                "signin_authorize_url": self.signin_authorize_url,
                "signin_token_url": self.signin_token_url,
                "signout_url": self.signout_url,
            }
            for name, url in urls.items():
                if url is not None and not url.startswith("https://"):
                    raise ValueError(
                        f"{self.env_name(name)} must be an https URL in environment "
                        f"{self.environment}"
                    )
        return self

    @property
    def writer_metrics_url_list(self) -> list[str]:
        """The stream-writer base URLs, without empty entries or trailing slashes."""
        return [u.strip().rstrip("/") for u in self.writer_metrics_urls.split(",") if u.strip()]

    @property
    def signin_client(self) -> SignInClient | None:
        """The dashboard as the provider's OAuth client; None when sign-in is not set."""
        if not (self.signin_authorize_url and self.signin_token_url and self.signin_client_id):
            return None
        return SignInClient(
            authorize_url=self.signin_authorize_url,
            token_url=self.signin_token_url,
            client_id=self.signin_client_id,
            scopes=self.signin_scopes,
            logout_url=self.signout_url,
        )

    @property
    def secure_cookie(self) -> bool:
        """Whether the session cookie carries the Secure attribute."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.environment not in ("local", "test")
