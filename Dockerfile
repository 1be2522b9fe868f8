# Every cardstream image: the four services and the `cardstream` command image compose
# uses (emulator, bootstrap-aws, migrate). They differ only in three build arguments, set
# per target in docker-bake.hcl and per service in compose.yaml: PACKAGE (the workspace
# member installed), PORT (where /healthz answers) and COMMAND (what the container runs).
# Build from the repository root, which holds the uv workspace and its single lock:
# `docker buildx bake` (services), `docker buildx bake cli`.
#
# Base images are written out in the FROM lines (not build arguments) so that Dependabot
# (.github/dependabot.yml) can read and move them. The Python base is pinned by digest; uv's
# image is pinned by version (the tag CI's setup-uv installs) and Dependabot proposes its
# updates. No `# syntax=` line: BuildKit's built-in Dockerfile frontend is used, so the
# build pulls no frontend image besides the two below.

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11.15-slim-trixie@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS base

FROM base AS build
ARG PACKAGE=cardstream
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src
# Third-party dependencies first: this layer is reused until uv.lock or a pyproject changes.
COPY pyproject.toml uv.lock README.md ./
COPY shared/pyproject.toml shared/
COPY monitoring/pyproject.toml monitoring/
COPY services/ingest-api/pyproject.toml services/ingest-api/
COPY services/stream-writer/pyproject.toml services/stream-writer/
COPY services/db-loader/pyproject.toml services/db-loader/
COPY services/dashboard/pyproject.toml services/dashboard/
COPY infra/pyproject.toml infra/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package "${PACKAGE}"
COPY . .
# --no-editable: workspace packages are installed as wheels, so /app/.venv is self-contained.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"

FROM base AS runtime
ARG PORT=5000
ARG COMMAND="cardstream --help"
RUN groupadd --system --gid 10001 cardstream \
    && useradd --system --uid 10001 --gid cardstream --no-create-home \
       --shell /usr/sbin/nologin cardstream
COPY --from=build /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CARDSTREAM_HEALTH_URL="http://127.0.0.1:${PORT}/healthz" \
    CARDSTREAM_COMMAND="${COMMAND}"
WORKDIR /app
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CARDSTREAM_HEALTH_URL'], timeout=3)"]
# exec: the command replaces the shell as PID 1 and receives ECS's SIGTERM itself.
CMD ["sh", "-c", "exec $CARDSTREAM_COMMAND"]
