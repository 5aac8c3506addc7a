#!/usr/bin/env bash
# Compiles the platform to JavaScript (tsconfig.build.json → dist/, what `npm start` and the systemd service run
# with plain node) when dist/ is missing or older than any of its sources (the folders the build includes), the
# TypeScript settings or the lockfile. tsc rewrites every output, so dist/bin/citypulse.js dates the build; a type
# error fails it (noEmitOnError) and leaves the previous dist/ as it was. Used by scripts/setup.sh and by tests
# that run dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a sources < <(node -p "require('./tsconfig.build.json').include.join(' ')")
if [ ! -f dist/bin/citypulse.js ] ||
  [ -n "$(find "${sources[@]}" tsconfig.json tsconfig.build.json package-lock.json -type f -newer dist/bin/citypulse.js -print -quit)" ]; then
  echo "citypulse: building the platform (tsc → dist/) ..." >&2
  npx tsc -p tsconfig.build.json >&2
fi
