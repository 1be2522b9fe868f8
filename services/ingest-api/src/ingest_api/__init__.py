"""Merchant-facing FastAPI service: JWT-authenticated, tokenizes card numbers, writes to Kinesis."""
