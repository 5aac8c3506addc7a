#!/usr/bin/env bash
# Prints the folder that holds include/node/ (node-gyp's nodedir) with the C headers of the Node.js that runs
# here, or nothing when none is installed. scripts/setup.sh hands it to npm ci as npm_config_nodedir.
#
# Why: a native addon (better-sqlite3) is compiled by node-gyp when no prebuilt binary can be fetched, as on a
# closed network. Unless npm's nodedir names installed headers, node-gyp downloads them first, which fails there.
# Debian's nodejs installs them in /usr/include/node and Node's own tarball in <prefix>/include/node; a machine's
# ~/.npmrc may say so (nodedir=/usr), but a fresh HOME, a CI account or another user has no such file.
# Headers count only when they are of this Node's ABI (NODE_MODULE_VERSION): an addon built against another
# version's headers would not load.
set -euo pipefail

node_bin=$(command -v node) || exit 0
abi=$(node -p process.versions.modules)
candidates=("$(dirname "$(dirname "$node_bin")")" "$(dirname "$(dirname "$(readlink -f "$node_bin")")")" /usr /usr/local)
for prefix in "${candidates[@]}"; do
  header="$prefix/include/node/node_version.h"
  [ -f "$header" ] || continue
  if grep -Eq "^#define NODE_MODULE_VERSION $abi\b" "$header"; then
    echo "$prefix"
    exit 0
  fi
done
