"""Alerts per tenant, reviewed by people, with an append-only audit trail.

* Each alert carries the tenant of its transaction (``client_id``, filled by the rules);
  row-level security shows the api role only the alerts of the tenant its session names
  (``cardstream.tenant_visible``, revision ``0002``), or all of them for an operator.
* The api reads alerts through ``cardstream.tenant_alert_detail``, owned by the tenant
  reader like the api's transaction view. For a tenant, evidence is shown without what
  belongs to other merchants of the card: figures summed or taken over all its purchases
  (``total_amount``, ``card_median``) are left out, and a transaction the evidence names
  (``trigger_trans_num``, ``previous_trans_num``) only when it is the tenant's own. An
  operator sees the evidence whole.
* Reviewers are people: a change records the subject and the person's name.
* Every change of an alert's case columns (status, note, who) appends one row to
  ``cardstream.alert_status_change``, written by a trigger with the owner's rights (the
  api role cannot write the trail itself, so it cannot write one that did not happen).
  The trail refuses UPDATE, DELETE and TRUNCATE whoever asks: it is append-only.

Revision ID: alerts_0002
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from cardstream_shared import resource_names as names

revision = "alerts_0002"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = """
ALTER TABLE cardstream.alert ADD COLUMN client_id text;
UPDATE cardstream.alert a SET client_id = t.client_id
FROM cardstream.transaction_key k
JOIN cardstream.transaction t
    ON t.trans_num = k.trans_num AND t.trans_date_trans_time = k.trans_date_trans_time
WHERE k.trans_num = a.trans_num;
ALTER TABLE cardstream.alert ALTER COLUMN client_id SET NOT NULL;
-- A tenant's page of alerts is read from its own index range, not filtered out of all.
CREATE INDEX alert_client ON cardstream.alert (client_id, alert_id);
ALTER TABLE cardstream.alert ADD COLUMN status_changed_by_name text
    CONSTRAINT alert_status_changed_by_name_length CHECK (length(status_changed_by_name) <= 256);

ALTER TABLE cardstream.alert_status_change ADD COLUMN client_id text;
UPDATE cardstream.alert_status_change s SET client_id = a.client_id
FROM cardstream.alert a WHERE a.alert_id = s.alert_id;
ALTER TABLE cardstream.alert_status_change ALTER COLUMN client_id SET NOT NULL;
ALTER TABLE cardstream.alert_status_change ADD COLUMN changed_by_name text;
"""

_TRAIL = """
CREATE OR REPLACE FUNCTION cardstream.alert_status_audit() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (NEW.status, NEW.status_note, NEW.status_changed_by, NEW.status_changed_by_name)
       IS DISTINCT FROM
       (OLD.status, OLD.status_note, OLD.status_changed_by, OLD.status_changed_by_name)
    THEN
        -- "Who" comes from the caller's token; the API sets it with every change.
        IF coalesce(NEW.status_changed_by, '') = '' THEN
            RAISE EXCEPTION 'an alert status change must name who made it'
                USING ERRCODE = 'not_null_violation';
        END IF;
        NEW.status_changed_at := clock_timestamp();
        INSERT INTO cardstream.alert_status_change
            (alert_id, client_id, from_status, to_status, changed_by, changed_by_name,
             changed_at, note)
        VALUES
            (OLD.alert_id, OLD.client_id, OLD.status, NEW.status, NEW.status_changed_by,
             NEW.status_changed_by_name, NEW.status_changed_at, NEW.status_note);
    END IF;
    RETURN NEW;
END;
$$;

CREATE FUNCTION cardstream.refuse_trail_rewrite() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'the alert audit trail is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
REVOKE ALL ON FUNCTION cardstream.refuse_trail_rewrite() FROM PUBLIC;
CREATE TRIGGER alert_status_change_append_only BEFORE UPDATE OR DELETE
    ON cardstream.alert_status_change
    FOR EACH ROW EXECUTE FUNCTION cardstream.refuse_trail_rewrite();
CREATE TRIGGER alert_status_change_no_truncate BEFORE TRUNCATE
    ON cardstream.alert_status_change
    FOR EACH STATEMENT EXECUTE FUNCTION cardstream.refuse_trail_rewrite();
"""

_POLICIES = """
ALTER TABLE cardstream.alert ENABLE ROW LEVEL SECURITY;
CREATE POLICY loader_all ON cardstream.alert TO {loader} USING (true) WITH CHECK (true);
CREATE POLICY tenant_rows ON cardstream.alert FOR SELECT TO {api}, {reader}
    USING (cardstream.tenant_visible(client_id));
CREATE POLICY tenant_reviews ON cardstream.alert FOR UPDATE TO {api}
    USING (cardstream.tenant_visible(client_id));
ALTER TABLE cardstream.alert_status_change ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON cardstream.alert_status_change FOR SELECT TO {api}
    USING (cardstream.tenant_visible(client_id));
"""

_VIEWS = """
-- The api's alerts: alert_detail for the alerts the session may see, evidence as the
-- session may see it (the key look-up below is filtered by the tenant policy too). Id and
-- tenant come from the alert itself, so a tenant's page reads its alert_client range.
CREATE VIEW cardstream.tenant_alert_detail AS
SELECT a.alert_id,
       d.rule,
       d.severity,
       d.score,
       CASE WHEN cardstream.reader_sees_all_tenants() THEN d.evidence
            ELSE d.evidence - ARRAY['total_amount', 'card_median'] - ARRAY(
                SELECT e.key
                FROM jsonb_each_text(d.evidence) e
                WHERE e.key IN ('trigger_trans_num', 'previous_trans_num')
                  AND NOT EXISTS (
                      SELECT FROM cardstream.transaction_key r WHERE r.trans_num = e.value
                  )
            )
       END AS evidence,
       d.trans_num,
       d.trans_date_trans_time,
       d.amt,
       d.category,
       d.merchant,
       d.card_masked,
       d.card_last4,
       a.client_id,
       d.status,
       d.status_changed_by,
       a.status_changed_by_name,
       d.status_changed_at,
       d.status_note,
       d.created_at
FROM cardstream.alert a
JOIN cardstream.alert_detail d ON d.alert_id = a.alert_id;
"""


def _grants() -> str:
    reader = names.DB_TENANT_READER_ROLE
    api = names.DB_API_ROLE
    dashboard = names.DB_DASHBOARD_ROLE
    return f"""
GRANT SELECT ON cardstream.alert, cardstream.alert_detail TO {reader};
GRANT CREATE ON SCHEMA cardstream TO {reader};
ALTER VIEW cardstream.tenant_alert_detail OWNER TO {reader};
REVOKE CREATE ON SCHEMA cardstream FROM {reader};

REVOKE SELECT ON cardstream.alert_detail FROM {api};
GRANT SELECT ON cardstream.tenant_alert_detail TO {api};
GRANT SELECT (client_id) ON cardstream.alert TO {api};
GRANT UPDATE (status_changed_by_name) ON cardstream.alert TO {api};
GRANT SELECT ON cardstream.dash_alerts_open, cardstream.dash_alerts_latest TO {dashboard};
"""  # noqa: S608 - role names from resource_names


def upgrade() -> None:
    op.execute(_COLUMNS)
    op.execute(_TRAIL)
    op.execute(
        _POLICIES.format(
            loader=names.DB_LOADER_ROLE, api=names.DB_API_ROLE, reader=names.DB_TENANT_READER_ROLE
        )
    )
    op.execute(_VIEWS)
    op.execute(_grants())


def downgrade() -> None:
    api = names.DB_API_ROLE
    op.execute(
        f"""
DROP VIEW cardstream.tenant_alert_detail;
GRANT SELECT ON cardstream.alert_detail TO {api};
DROP POLICY tenant_rows ON cardstream.alert_status_change;
ALTER TABLE cardstream.alert_status_change DISABLE ROW LEVEL SECURITY;
DROP POLICY tenant_reviews ON cardstream.alert;
DROP POLICY tenant_rows ON cardstream.alert;
DROP POLICY loader_all ON cardstream.alert;
ALTER TABLE cardstream.alert DISABLE ROW LEVEL SECURITY;
DROP TRIGGER alert_status_change_no_truncate ON cardstream.alert_status_change;
DROP TRIGGER alert_status_change_append_only ON cardstream.alert_status_change;
DROP FUNCTION cardstream.refuse_trail_rewrite();
-- The audit function of alerts_0001, which knows neither names nor tenants.
CREATE OR REPLACE FUNCTION cardstream.alert_status_audit() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
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
ALTER TABLE cardstream.alert_status_change DROP COLUMN changed_by_name, DROP COLUMN client_id;
DROP INDEX cardstream.alert_client;
ALTER TABLE cardstream.alert DROP COLUMN status_changed_by_name, DROP COLUMN client_id;
"""  # noqa: S608 - role names from resource_names
    )
