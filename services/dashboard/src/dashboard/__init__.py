"""Read-only monitoring dashboard over the analytics views."""
