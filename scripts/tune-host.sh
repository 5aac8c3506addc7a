#!/usr/bin/env bash
# Kernel settings for a host that takes many MQTT connections at once (npm run tune-host; needs root).
#
# After a cellular outage thousands of devices reconnect within a second. The broker asks for an accept queue of
# 16,384 connections (broker/broker.ts), but the kernel caps it at net.core.somaxconn (4096 on many hosts): the
# SYNs that find the queue full are dropped, and a device whose SYN is dropped again and again waits for its
# kernel's 1, 2, 4, 8, 16 s back-off: 31 s for the fifth retransmission. Measured with `npm run bench -- storm`
# (docs/benchmarks.md): at 4096 the kernel dropped ~55,000 connection attempts per 10,000-device storm and the
# platform's thread sat partly idle waiting for them; at 16,384, none.
#
# Raises only what is lower than the target; prints what it changed. Not persistent across reboots: put the same
# keys in /etc/sysctl.d/ for that. Broker guides (EMQX, HiveMQ) give the same advice.
set -euo pipefail

TARGET=16384
KEYS=(net.core.somaxconn net.ipv4.tcp_max_syn_backlog)

if [ "$(id -u)" -ne 0 ]; then
  echo "citypulse: tune-host needs root (it writes /proc/sys); as root: sysctl -w ${KEYS[*]/%/=$TARGET}" >&2
  exit 1
fi
for key in "${KEYS[@]}"; do
  file="/proc/sys/${key//.//}"
  now=$(cat "$file")
  if [ "$now" -lt "$TARGET" ]; then
    if echo "$TARGET" >"$file" 2>/dev/null; then
      echo "citypulse: $key $now -> $TARGET"
    else
      echo "citypulse: cannot write $key (read-only /proc/sys, a container?); it stays $now" >&2
      exit 1
    fi
  else
    echo "citypulse: $key is $now (>= $TARGET), left as it is"
  fi
done
