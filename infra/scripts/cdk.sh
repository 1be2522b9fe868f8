#!/usr/bin/env bash
# The pinned CDK CLI (infra/package.json; `npm ci --prefix infra` installs it) with the
# deployment's context: environment, account (of the current AWS credentials), region, the
# repository CI deploys from (GitHub Actions sets GITHUB_REPOSITORY; the CI access stack's
# roles trust its tokens) and the digest of every service image. What the deploy workflow
# runs, and how to run it by hand:
#
#   CARDSTREAM_ENVIRONMENT=dev AWS_REGION=eu-west-1 GITHUB_REPOSITORY=example-org/cardstream \
#   IMAGE_DIGESTS='{"ingest-api":"sha256:...","stream-writer":"sha256:...",...}' \
#     infra/scripts/cdk.sh diff
#
# Images are deployed by digest only (the digests ci.yml proved); there is no tag to pass.
set -euo pipefail
: "${CARDSTREAM_ENVIRONMENT:?set CARDSTREAM_ENVIRONMENT, e.g. dev}"
: "${AWS_REGION:?set AWS_REGION, e.g. eu-west-1}"
: "${GITHUB_REPOSITORY:?set GITHUB_REPOSITORY to the owner/name of the repository CI deploys from}"
: "${IMAGE_DIGESTS:?set IMAGE_DIGESTS to the JSON object of image digests ci.yml printed}"

infra="$(cd "$(dirname "$0")/.." && pwd)"
account="$(aws sts get-caller-identity --query Account --output text)"
cd "$infra"
exec "$infra/node_modules/.bin/cdk" "$@" \
  -c "cardstream.environment=${CARDSTREAM_ENVIRONMENT}" \
  -c "cardstream.account=${account}" \
  -c "cardstream.region=${AWS_REGION}" \
  -c "cardstream.github_repository=${GITHUB_REPOSITORY}" \
  -c "cardstream.image_digests=${IMAGE_DIGESTS}"
