#!/bin/sh
# Runs the dashboard's browser test (dashboard.test.js) with TAP output:
# Debian's Chromium, headless, driven by puppeteer-core from this directory's
# node_modules (npm ci here first; scripts/dev test does). Screenshots go to
# $ARTIFACTS.
#
#   cd tests/browser && npm ci && AUTHMOCK=../../build/authmock sh run.sh
set -eu
: "${AUTHMOCK:?set AUTHMOCK to the authmock binary, e.g. AUTHMOCK=../../build/authmock}"
case "$AUTHMOCK" in
  /*) ;;
  */*) AUTHMOCK="$(pwd)/$AUTHMOCK" ;;
esac
export AUTHMOCK
cd "$(dirname "$0")"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
export CHROMIUM
if [ ! -d node_modules/puppeteer-core ]; then
  echo "1..0 # SKIP puppeteer-core is not installed: run npm ci in tests/browser"
  exit 0
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "1..0 # SKIP no Chromium at $CHROMIUM (apt-get install chromium)"
  exit 0
fi
if node --help 2>/dev/null | grep -q -- '--test-reporter'; then
  exec node --test --test-reporter=tap dashboard.test.js
else
  exec node --test dashboard.test.js
fi
