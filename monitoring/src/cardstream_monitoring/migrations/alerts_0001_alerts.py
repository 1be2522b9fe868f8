"""Monitoring alerts: alert and audit tables, the API view, dashboard views, grants.

``cardstream.alert`` holds one row per (transaction, rule): the unique key makes a reload,
a redelivered object or two loaders racing on the same rows raise each alert once
(``INSERT ... ON CONFLICT DO NOTHING``). The card is referenced by its token, never stored
in clear; every view shows only the last four digits.

Status changes (open, reviewed, dismissed, escalated) are written by the api role, which may
update only the status columns. A trigger stamps the time from the database clock and
appends the change to ``cardstream.alert_status_change``; it runs with the owner's rights,
so the api role cannot write the audit trail directly, nor alter or delete it.

Revision ID: alerts_0001
Revises: dashboard_0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

from cardstream_shared import resource_names as names

revision = "alerts_0001"
down_revision = "dashboard_0001"
branch_labels = None
depends_on = None

_TABLES = """
CREATE TABLE cardstream.alert (
    alert_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trans_num text NOT NULL REFERENCES cardstream.transaction_key (trans_num),
    rule text NOT NULL CONSTRAINT alert_rule_name CHECK (rule ~ '^[a-z][a-z0-9_]{0,62}$'),
    severity text NOT NULL CONSTRAINT alert_severity CHECK (severity IN ('low', 'medium', 'high')),
    score numeric(10, 2) NOT NULL CONSTRAINT alert_score_non_negative CHECK (score >= 0),
    evidence jsonb NOT NULL,
    -- The card of the transaction, kept here so that a card's alerts are found by key
    -- without scanning every monthly partition of the transaction table.
    card_token text NOT NULL REFERENCES cardstream.card (card_token),
    status text NOT NULL DEFAULT 'open'
        CONSTRAINT alert_status CHECK (status IN ('open', 'reviewed', 'dismissed', 'escalated')),
    status_changed_by text,
    status_changed_at timestamptz,
    status_note text CONSTRAINT alert_status_note_length CHECK (length(status_note) <= 1000),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT alert_one_per_rule UNIQUE (trans_num, rule)
);
CREATE INDEX alert_status_rule ON cardstream.alert (status, rule, severity);
CREATE INDEX alert_card ON cardstream.alert (card_token, alert_id);
CREATE INDEX alert_created ON cardstream.alert (created_at);

CREATE TABLE cardstream.alert_status_change (
    change_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id bigint NOT NULL REFERENCES cardstream.alert (alert_id),
    from_status text NOT NULL,
    to_status text NOT NULL,
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL,
    note text
);
CREATE INDEX alert_status_change_alert ON cardstream.alert_status_change (alert_id, change_id);
"""

_FUNCTIONS = """
-- Great-circle distance in km (mean Earth radius, IUGG). A plain SQL expression so the
-- planner inlines it into the rule queries.
CREATE FUNCTION cardstream.haversine_km(
    lat1 double precision, long1 double precision, lat2 double precision, long2 double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT 2 * 6371.0088 * asin(least(1.0, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(long2 - long1) / 2), 2)
    )))
$$;

CREATE FUNCTION cardstream.alert_status_audit() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        -- "Who" comes from the caller's token; the API sets it with every change.
        IF coalesce(NEW.status_changed_by, '') = '' THEN
            RAISE EXCEPTION 'an alert status change must name who made it'
                USING ERRCODE = 'not_null_violation';
        END IF;
        NEW.status_changed_at := clock_timestamp();
        INSERT INTO cardstream.alert_status_change
            (alert_id, from_status, to_status, changed_by, changed_at, note)
        VALUES
            (OLD.alert_id, OLD.status, NEW.status, NEW.status_changed_by,
             NEW.status_changed_at, NEW.status_note);
    END IF;
    RETURN NEW;
END;
$$;
REVOKE ALL ON FUNCTION cardstream.alert_status_audit() FROM PUBLIC;
CREATE TRIGGER alert_status_audit BEFORE UPDATE ON cardstream.alert
    FOR EACH ROW EXECUTE FUNCTION cardstream.alert_status_audit();
"""

_VIEWS = """
CREATE VIEW cardstream.alert_detail AS
SELECT a.alert_id,
       a.rule,
       a.severity,
       a.score,
       a.evidence,
       a.trans_num,
       t.trans_date_trans_time,
       t.amt,
       t.category,
       m.merchant,
       '****' || c.card_last4 AS card_masked,
       c.card_last4,
       t.client_id,
       a.status,
       a.status_changed_by,
       a.status_changed_at,
       a.status_note,
       a.created_at
FROM cardstream.alert a
JOIN cardstream.card c ON c.card_token = a.card_token
JOIN cardstream.transaction_key k ON k.trans_num = a.trans_num
JOIN cardstream.transaction t
    ON t.trans_num = k.trans_num AND t.trans_date_trans_time = k.trans_date_trans_time
JOIN cardstream.merchant m ON m.merchant_id = t.merchant_id;

CREATE VIEW cardstream.dash_alerts_open AS
SELECT rule,
       severity,
       count(*) AS open_alerts,
       min(created_at) AS oldest_created_at,
       max(created_at) AS latest_created_at
FROM cardstream.alert
WHERE status = 'open'
GROUP BY rule, severity;

CREATE VIEW cardstream.dash_alerts_latest AS
SELECT alert_id,
       created_at,
       rule,
       severity,
       score,
       status,
       trans_num,
       trans_date_trans_time,
       amt,
       category,
       merchant,
       card_masked,
       evidence
FROM cardstream.alert_detail
ORDER BY alert_id DESC
LIMIT 500;
"""


def _grants() -> str:
    loader = names.DB_LOADER_ROLE
    api = names.DB_API_ROLE
    analyst = names.DB_ANALYST_ROLE
    return f"""
GRANT SELECT, INSERT ON cardstream.alert TO {loader};
GRANT SELECT ON cardstream.alert_detail, cardstream.alert_status_change TO {api};
GRANT SELECT (alert_id, status) ON cardstream.alert TO {api};
GRANT UPDATE (status, status_changed_by, status_note) ON cardstream.alert TO {api};
GRANT SELECT ON cardstream.dash_alerts_open, cardstream.dash_alerts_latest TO {analyst};
"""


def upgrade() -> None:
    op.execute(_TABLES)
    op.execute(_FUNCTIONS)
    op.execute(_VIEWS)
    op.execute(_grants())


def downgrade() -> None:
    op.execute(
        "DROP VIEW cardstream.dash_alerts_latest, cardstream.dash_alerts_open,"
        " cardstream.alert_detail;"
        "DROP TABLE cardstream.alert_status_change, cardstream.alert;"
        "DROP FUNCTION cardstream.alert_status_audit(), cardstream.haversine_km("
        "double precision, double precision, double precision, double precision);"
    )
