"""HTTP routes of ingest-api."""
