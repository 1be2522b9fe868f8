#!/usr/bin/env bash
# Start the whole compose stack from images already built, replay generated transactions
# through the ingest-api and check that every one of them landed in PostgreSQL exactly once.
# CI runs it on the images it has just baked (.github/workflows/ci.yml); with Docker:
#
#   docker buildx bake all --load && scripts/compose-smoke.sh
#
# ROWS (default 300) sets how many transactions; TIMEOUT_S (default 300) bounds each wait.
# The stack is left running (`docker compose down --volumes` removes it).
set -euo pipefail
cd "$(dirname "$0")/.."

rows="${ROWS:-300}"
timeout_s="${TIMEOUT_S:-300}"

# --wait: every service healthy (the images' own HEALTHCHECK), the one-shot jobs
# (bootstrap-aws, migrate) finished with status 0.
docker compose up --detach --no-build --wait --wait-timeout "$timeout_s"

# The dashboard's address signs a browser in at the sign-in service (a cookie jar for a
# browser): the page, not "sign-in not configured", comes back.
jar="$(mktemp)"
trap 'rm -f "$jar"' EXIT
curl -fsS -L -c "$jar" -b "$jar" -o /dev/null http://127.0.0.1:8050/
curl -fsS -b "$jar" http://127.0.0.1:8050/ | grep -q "Real Time Credit Card Fraud Monitoring"
echo "compose-smoke: the dashboard signs a browser in"

# The tools container finds the emulator and the local issuer in its stack.json (the
# stack-info config of compose.yaml), so `cardstream token` signs a token the API accepts.
docker compose run --rm -T -e ROWS="$rows" tools sh -euc '
  cardstream generate --rows "$ROWS" --seed 15 --out /tmp/rows.csv
  token="$(cardstream token --scope transactions:write)"
  cardstream replay /tmp/rows.csv --url http://ingest-api:8000 --token "$token" --rate 0 --quiet
'

query='SELECT count(*) || $$ $$ || count(DISTINCT trans_num) FROM cardstream.transaction'
deadline=$((SECONDS + timeout_s))
while :; do
  read -r landed distinct < <(
    docker compose exec -T postgres psql -U postgres -d cardstream -tAc "$query"
  )
  if [ "$landed" -eq "$rows" ] && [ "$distinct" -eq "$rows" ]; then
    echo "compose-smoke: all ${rows} replayed transactions are in PostgreSQL, each once"
    exit 0
  fi
  if [ "$landed" -gt "$rows" ] || [ "$SECONDS" -ge "$deadline" ]; then
    echo "compose-smoke: ${landed} rows (${distinct} distinct) in PostgreSQL, expected ${rows}" >&2
    docker compose ps --all >&2
    exit 1
  fi
  sleep 2
done
