#!/bin/sh
# /usr/bin/vdsm-agentd and /usr/bin/vdsm-agent-client: find a Node.js >= 20 and run the program
# with it, or fail with one line that says what is missing. The node used is $NODEJS when set
# (a Node.js installed elsewhere, e.g. /opt/node-v20/bin/node), else `node`, else `nodejs` on PATH.
set -u
case "${0##*/}" in
  vdsm-agent-client) prog=vdsm-agent-client; entry=/usr/lib/vdsm-agentd/dist/client/cli.js ;;
  *) prog=vdsm-agentd; entry=/usr/lib/vdsm-agentd/dist/main.js ;;
esac
node="${NODEJS:-}"
if [ -z "$node" ]; then
  node="$(command -v node || command -v nodejs || true)"
fi
if [ -z "$node" ]; then
  echo "$prog: error: Node.js >= 20 is needed and none was found (install nodejs >= 20, or set NODEJS to its path)" >&2
  exit 2
fi
# One start of node tells its version and whether it can refuse SIGUSR1 outright (Node >= 22.14;
# older ones rely on the daemon's own SIGUSR1 handler, installed before anything else runs).
info="$("$node" -p 'process.versions.node + " " + (process.allowedNodeEnvironmentFlags.has("--disable-sigusr1") ? "--disable-sigusr1" : "")' 2>/dev/null)"
version="${info%% *}"
major="${version%%.*}"
case "$major" in
  ''|*[!0-9]*) echo "$prog: error: $node does not run as Node.js (install nodejs >= 20, or set NODEJS to its path)" >&2; exit 2 ;;
esac
if [ "$major" -lt 20 ]; then
  echo "$prog: error: Node.js >= 20 is needed, $node is $version (install nodejs >= 20, or set NODEJS to its path)" >&2
  exit 2
fi
flags="${info#"$version"}"
# shellcheck disable=SC2086 # $flags is empty or one flag
exec "$node" $flags "$entry" "$@"
