"""Tenants isolated in the database; the dashboard and the analyst see no cardholder.

A tenant is the client that posted a transaction (``transaction.client_id``). The api role
reads transactions only through ``cardstream.tenant_transaction_detail``, and row-level
security decides which rows that view returns, from two settings the API makes per
database transaction (``set_config(..., true)``, i.e. ``SET LOCAL``):

* ``cardstream.tenant``: the caller's client id; rows of that tenant are visible;
* ``cardstream.all_tenants``: ``on`` for an operator (scope ``tenants:all``): every row.

Neither set: no row. A view reads its tables with its owner's rights and a table's owner
bypasses row-level security, so the api's views belong to ``cardstream_tenant_reader``, a
role that cannot log in and to which the policies apply.

The policy sits on ``cardstream.transaction_key`` (one row per transaction) rather than
on the partitioned fact table: PostgreSQL refuses ``COPY FROM`` into a table with
row-level security for any role it applies to, the loader's COPY is its fast path, and
exempting the loader would take ``BYPASSRLS``, which a managed database's administrator
may not be able to grant. Every view the api reads joins through the key.

Least privilege: the dashboard connects with ``cardstream_dashboard``, which reads the
dashboard views and nothing else. Cardholder names, street and date of birth are read
only by the api role (its tenant's own transactions); the analyst role reads
transactions through ``cardstream.transaction_masked``, which has none of them, and no
longer through ``transaction_detail`` or ``source_row``.

Revision ID: 0002
Revises: alerts_0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from cardstream_shared import resource_names as names

revision = "0002"
down_revision = "alerts_0001"
branch_labels = None
depends_on = None

_FUNCTIONS = """
CREATE FUNCTION cardstream.reader_sees_all_tenants() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(current_setting('cardstream.all_tenants', true), '') = 'on' $$;

-- True when the session may read rows of tenant ``client_id``; false (never null) when
-- no tenant is set: fail closed.
CREATE FUNCTION cardstream.tenant_visible(client_id text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT cardstream.reader_sees_all_tenants()
        OR coalesce(client_id = nullif(current_setting('cardstream.tenant', true), ''), false)
$$;
REVOKE ALL ON FUNCTION cardstream.reader_sees_all_tenants(), cardstream.tenant_visible(text)
    FROM PUBLIC;
"""

_POLICIES = """
ALTER TABLE cardstream.transaction_key ENABLE ROW LEVEL SECURITY;
-- The loader registers and reads every key (the rules look at a card's whole history).
CREATE POLICY loader_all ON cardstream.transaction_key TO {loader} USING (true) WITH CHECK (true);
CREATE POLICY tenant_rows ON cardstream.transaction_key FOR SELECT TO {reader}
USING (EXISTS (
    SELECT FROM cardstream.transaction t
    WHERE t.trans_num = transaction_key.trans_num
      AND t.trans_date_trans_time = transaction_key.trans_date_trans_time
      AND cardstream.tenant_visible(t.client_id)
));
"""

_VIEWS = """
-- The api's transactions: transaction_detail, for the keys the session may see.
CREATE VIEW cardstream.tenant_transaction_detail AS
SELECT d.*
FROM cardstream.transaction_key k
JOIN cardstream.transaction_detail d
    ON d.trans_num = k.trans_num AND d.trans_date_trans_time = k.trans_date_trans_time;

-- The analyst's transactions: card masked, no cardholder name, street or date of birth.
CREATE VIEW cardstream.transaction_masked AS
SELECT trans_num, trans_date_trans_time, unix_time, amt, category, merchant, merch_lat,
       merch_long, card_masked, card_last4, gender, city, state, zip, lat, long, city_pop,
       job, is_fraud, client_id, received_at, s3_bucket, s3_key, loaded_at
FROM cardstream.transaction_detail;
"""


def _grants() -> str:
    reader = names.DB_TENANT_READER_ROLE
    api = names.DB_API_ROLE
    analyst = names.DB_ANALYST_ROLE
    dashboard = names.DB_DASHBOARD_ROLE
    dashboard_views = ", ".join(f"cardstream.{name}" for name in names.DASHBOARD_VIEWS)
    return f"""
GRANT USAGE ON SCHEMA cardstream TO {reader}, {dashboard};
GRANT EXECUTE ON FUNCTION cardstream.reader_sees_all_tenants(), cardstream.tenant_visible(text)
    TO {reader}, {api};
GRANT SELECT ON cardstream.transaction_key, cardstream.transaction,
    cardstream.transaction_detail TO {reader};
-- ALTER ... OWNER TO needs the new owner to hold CREATE on the schema, only for the moment.
GRANT CREATE ON SCHEMA cardstream TO {reader};
ALTER VIEW cardstream.tenant_transaction_detail OWNER TO {reader};
REVOKE CREATE ON SCHEMA cardstream FROM {reader};

REVOKE SELECT ON cardstream.transaction_detail FROM {api};
GRANT SELECT ON cardstream.tenant_transaction_detail TO {api};
REVOKE SELECT ON cardstream.transaction_detail, cardstream.source_row FROM {analyst};
GRANT SELECT ON cardstream.transaction_masked TO {analyst};

GRANT SELECT ON {dashboard_views} TO {dashboard};
"""  # noqa: S608 - role names from resource_names


def upgrade() -> None:
    op.execute(_FUNCTIONS)
    op.execute(_POLICIES.format(loader=names.DB_LOADER_ROLE, reader=names.DB_TENANT_READER_ROLE))
    op.execute(_VIEWS)
    op.execute(_grants())


def downgrade() -> None:
    api = names.DB_API_ROLE
    analyst = names.DB_ANALYST_ROLE
    op.execute(
        f"GRANT SELECT ON cardstream.transaction_detail TO {api};"
        f"GRANT SELECT ON cardstream.transaction_detail, cardstream.source_row TO {analyst};"
        "DROP VIEW cardstream.transaction_masked, cardstream.tenant_transaction_detail;"
        "DROP POLICY tenant_rows ON cardstream.transaction_key;"
        "DROP POLICY loader_all ON cardstream.transaction_key;"
        "ALTER TABLE cardstream.transaction_key DISABLE ROW LEVEL SECURITY;"
        "DROP FUNCTION cardstream.tenant_visible(text), cardstream.reader_sees_all_tenants();"
    )
