"""Alembic migrations of the cardstream schema, shipped inside the package."""
