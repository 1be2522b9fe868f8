#!/usr/bin/env bash
# Install everything cardstream needs on a fresh machine: uv, the locked Python environment
# (.venv at the repository root) and, for the browser test, Debian's Chromium.
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  echo "bootstrap: installing uv" >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
fi
export PATH="$HOME/.local/bin:$PATH"

uv sync --frozen --all-packages --quiet

if [ "${CARDSTREAM_WITH_BROWSER:-0}" = "1" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "bootstrap: installing Debian's chromium for the dashboard browser test" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "bootstrap: chromium is missing and we are not root: install Debian's chromium package, or the dashboard browser test fails" >&2
  fi
fi
