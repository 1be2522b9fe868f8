# The two commands of the README. Both install what a fresh machine lacks first.
.PHONY: up test lint

# Run the whole pipeline locally (moto + embedded PostgreSQL + every service), replaying
# 5,000 generated transactions; Ctrl-C stops every process it started.
up:
	@./scripts/bootstrap.sh
	@.venv/bin/cardstream up --demo-rows 5000

# Lint, type-check and run every test tier.
test:
	@CARDSTREAM_WITH_BROWSER=1 ./scripts/bootstrap.sh
	@./scripts/test.sh
