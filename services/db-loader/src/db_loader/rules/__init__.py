"""Near-real-time monitoring rules (issue 7): configuration, set-based evaluation in
PostgreSQL over the rows a load inserted, the alert notifier and ``cardstream evaluate``."""
