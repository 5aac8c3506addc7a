#!/usr/bin/env bash
# The whole test suite: type check, then every test file under test/ (real InfluxDB, broker, clients).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== lint and format (biome)"
npx biome ci --reporter=summary .
echo "== type check"
npx tsc --noEmit -p .
if [ -f dashboard/tsconfig.json ]; then npx tsc --noEmit -p dashboard; fi
echo "== tests"
shopt -s nullglob
files=(test/*.test.ts)
exec node --import tsx --test --test-concurrency=2 --test-timeout=240000 "${files[@]}"
