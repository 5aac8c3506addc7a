#!/usr/bin/env bash
# Installs what the project needs and is missing: npm packages from the lockfile, and the Debian packages
# influxdb + influxdb-client (time series), mosquitto-clients (an independent MQTT client for tests), iproute2 (ss), chromium
# (dashboard browser tests), systemd (systemd-analyze, which checks the service unit), and cluster mode's engines
# (rabbitmq-server, postgresql, redis-server, haproxy); then builds the platform (dist/, compiled by tsc: what
# `npm start` and the service run) and the dashboard (dashboard/dist), each when it is missing or older than its
# sources. Depends on no npm configuration of the machine or the user (see nodedir).
# Idempotent and quick when everything is there. Used by `npm start`, `npm test` and .ci/run.
#   --no-dist   leave dist/ alone (`npm run dev` runs the TypeScript sources under tsx)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dist=1
[ "${1:-}" = "--no-dist" ] && build_dist=0

need=()
command -v influxd >/dev/null 2>&1 || need+=(influxdb influxdb-client)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
# ss (iproute2): a test reads the MQTT listener's accept queue as the kernel reports it.
command -v ss >/dev/null 2>&1 || need+=(iproute2)
# Debian chromium: the dashboard's browser tests drive it with playwright-core (a tool's own browser download
# does not work on a closed network).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# systemd-analyze (Debian systemd): a test verifies the unit `citypulse install-service` writes.
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# Cluster mode's distributed engines, run as the project's own processes on loopback (never the Debian units):
# RabbitMQ quorum queues (the replicated log), PostgreSQL (shared state), Redis (live data and presence across
# nodes), HAProxy (the edge in front of the nodes).
command -v rabbitmq-server >/dev/null 2>&1 || need+=(rabbitmq-server)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "citypulse: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "citypulse: installing ${need[*]} ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

# npm ci when node_modules is missing or older than the lockfile.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # node-gyp builds better-sqlite3 from source when its prebuilt binary cannot be fetched: point it at this
  # Node's installed headers, or it tries to download them (scripts/node-headers.sh says why).
  if [ -z "${npm_config_nodedir:-}" ]; then
    nodedir=$(bash scripts/node-headers.sh)
    if [ -n "$nodedir" ]; then export npm_config_nodedir="$nodedir"; fi
  fi
  echo "citypulse: installing npm packages (npm ci${npm_config_nodedir:+, Node headers from $npm_config_nodedir}) ..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# The dashboard (dashboard/ → dashboard/dist, served by dashboard-api): built when missing or older than any
# of its sources, the one platform file it bundles (the batch unpacker) or the lockfile.
if [ -f dashboard/vite.config.ts ] && { [ ! -f dashboard/dist/index.html ] ||
  [ -n "$(find dashboard dashboard-api/batch-frame.ts package-lock.json -path dashboard/dist -prune -o -type f -newer dashboard/dist/index.html -print -quit)" ]; }; then
  echo "citypulse: building the dashboard ..." >&2
  npx vite build -c dashboard/vite.config.ts >&2
fi

# The platform compiled to JavaScript (dist/), when missing or older than its sources.
if [ "$build_dist" = 1 ]; then bash scripts/build-dist.sh; fi
