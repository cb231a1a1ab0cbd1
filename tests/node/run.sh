#!/bin/sh
# Runs the node suites with TAP output on Node 18 and Node 20 alike:
#   mesh-client.test.js        mesh endpoints through @meshconnect/node-api
#   onlyoffice-schema.test.js  onlyoffice endpoints over fetch
# both validating every answer against the OpenAPI documents in ../schemas.
#
#   cd tests/node && npm ci && AUTHMOCK=/path/to/build/authmock sh run.sh
#
# Node >= 18.15 / 19.6 know --test-reporter (Node 20 defaults to the "spec"
# reporter, so ask for tap explicitly); older Node 18 builds print TAP anyway.
# Each file starts its own authmock servers, so node may run them in parallel.
set -eu
: "${AUTHMOCK:?set AUTHMOCK to the authmock binary, e.g. AUTHMOCK=../../build/authmock}"
case "$AUTHMOCK" in
  /*) ;;
  */*) AUTHMOCK="$(pwd)/$AUTHMOCK" ;;
esac
export AUTHMOCK
cd "$(dirname "$0")"
FILES="mesh-client.test.js onlyoffice-schema.test.js example-suite.test.js"
if node --help 2>/dev/null | grep -q -- '--test-reporter'; then
  # shellcheck disable=SC2086
  exec node --test --test-reporter=tap $FILES
else
  # shellcheck disable=SC2086
  exec node --test $FILES
fi
