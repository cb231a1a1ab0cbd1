#!/bin/sh
# Runs the mesh client suite with TAP output on Node 18 and Node 20 alike.
#
#   cd tests/node && npm ci && AUTHMOCK=/path/to/build/authmock sh run.sh
#
# Node >= 18.15 / 19.6 know --test-reporter (Node 20 defaults to the "spec"
# reporter, so ask for tap explicitly); older Node 18 builds print TAP anyway.
set -eu
: "${AUTHMOCK:?set AUTHMOCK to the authmock binary, e.g. AUTHMOCK=../../build/authmock}"
case "$AUTHMOCK" in
  /*) ;;
  */*) AUTHMOCK="$(pwd)/$AUTHMOCK" ;;
esac
export AUTHMOCK
cd "$(dirname "$0")"
if node --help 2>/dev/null | grep -q -- '--test-reporter'; then
  exec node --test --test-reporter=tap mesh-client.test.js
else
  exec node --test mesh-client.test.js
fi
