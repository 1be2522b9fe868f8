#!/usr/bin/env bash
# Lint (ruff), type-check (mypy --strict) and run all test tiers (pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
.venv/bin/mypy shared/src monitoring/src services/*/src infra/src src
.venv/bin/pytest "$@"
