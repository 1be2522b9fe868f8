"""Monitoring of the loaded transactions, in one package.

* :mod:`~cardstream_monitoring.rules`: the rule set and its configuration
  (``default_rules.toml`` plus an operator's override);
* :mod:`~cardstream_monitoring.engine`: every enabled rule as one set-based statement over
  the rows a load inserted;
* :mod:`~cardstream_monitoring.monitor`: what the db-loader plugs into its load transaction
  (rules before the commit; metrics and the webhook after it), built from
  :mod:`~cardstream_monitoring.settings`;
* :mod:`~cardstream_monitoring.notifier`: the signed webhook for high-severity alerts;
* :mod:`~cardstream_monitoring.alerts`: reading alerts and changing their status, as the
  ingest-api's ``/v1/alerts`` routes do;
* ``migrations/``: the alert tables, views and grants, applied by the db-loader's
  migration command in the one Alembic history of the database.
"""
