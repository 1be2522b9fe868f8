"""Names of the AWS resources cardstream uses, shared by the CDK app and the local stack.

Keeping them in one place means the local stack creates exactly what the services will meet
in AWS, and a rename cannot leave one side behind.
"""

from typing import Final

STREAM_NAME: Final = "cardstream-transactions"
LANDING_BUCKET: Final = "cardstream-landing"
ACCESS_LOG_BUCKET: Final = "cardstream-access-logs"
LANDED_QUEUE: Final = "cardstream-landed-objects"
LANDED_DLQ: Final = "cardstream-landed-objects-dlq"
LEASE_TABLE: Final = "cardstream-stream-writer-leases"

# Landed objects live under raw/; only that prefix notifies the loader.
RAW_PREFIX: Final = "raw/"
QUARANTINE_PREFIX: Final = "quarantine/"

# After this many receives SQS moves a message to the DLQ (the loader never deletes it).
MAX_RECEIVE_COUNT: Final = 5

# Secret *names* (not values): S105 does not apply.
PAN_KEY_SECRET: Final = "cardstream/pan-key"  # noqa: S105
JWT_SIGNING_KEY_SECRET: Final = "cardstream/jwt-signing-key"  # noqa: S105
DB_OWNER_SECRET: Final = "cardstream/db/owner"  # noqa: S105
DB_LOADER_SECRET: Final = "cardstream/db/loader"  # noqa: S105
DB_API_SECRET: Final = "cardstream/db/api"  # noqa: S105
DB_ANALYST_SECRET: Final = "cardstream/db/analyst"  # noqa: S105
DB_DASHBOARD_SECRET: Final = "cardstream/db/dashboard"  # noqa: S105

# Database roles (least privilege, see docs/data-model.md).
DB_NAME: Final = "cardstream"
DB_OWNER_ROLE: Final = "cardstream_owner"
DB_LOADER_ROLE: Final = "cardstream_loader"
DB_API_ROLE: Final = "cardstream_api"
DB_ANALYST_ROLE: Final = "cardstream_analyst"
DB_DASHBOARD_ROLE: Final = "cardstream_dashboard"
# Cannot log in: owns the views the api role reads, so that row-level security applies to
# them (a view reads its tables with its owner's rights, and a table's owner bypasses RLS).
DB_TENANT_READER_ROLE: Final = "cardstream_tenant_reader"
# Every role that logs in -> the secret holding its credentials (RDS secret format).
DB_ROLE_SECRETS: Final = {
    DB_OWNER_ROLE: DB_OWNER_SECRET,
    DB_LOADER_ROLE: DB_LOADER_SECRET,
    DB_API_ROLE: DB_API_SECRET,
    DB_ANALYST_ROLE: DB_ANALYST_SECRET,
    DB_DASHBOARD_ROLE: DB_DASHBOARD_SECRET,
}

# The dashboard's views (schema cardstream): aggregates and masked cases only, read by the
# dashboard and analyst roles. The migrations grant exactly these (with the alert tables'
# own dash_alerts_* views).
DASHBOARD_VIEWS: Final = (
    "dash_totals",
    "dash_fraud_by_location",
    "dash_fraud_by_state",
    "dash_fraud_by_merchant",
    "dash_fraud_by_category",
    "dash_volume_hourly",
    "dash_volume_daily",
    "dash_fraud_by_hour_of_day",
    "dash_freshness",
    "dash_freshness_by_minute",
    "dash_pipeline",
    "dash_fraud_transactions",
)

# OAuth scopes carried by merchant and reader tokens. A caller reads only its own tenant's
# transactions and alerts unless it holds SCOPE_ALL_TENANTS (operators).
SCOPE_WRITE: Final = "transactions:write"
SCOPE_READ: Final = "transactions:read"
SCOPE_ALERTS_REVIEW: Final = "alerts:review"
SCOPE_ALL_TENANTS: Final = "tenants:all"

# Where an identity provider sends an operator back to the dashboard with an authorization
# code (the operators' app client names it as its callback URL).
SIGNIN_CALLBACK_PATH: Final = "/auth/callback"
