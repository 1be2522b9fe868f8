"""The local stack: moto in server mode, embedded PostgreSQL, and the services as processes."""
