#!/usr/bin/env bash
# The real ODK Central server for the integration tests: where it is, start, stop, run a command
# with it. The one place that knows how to find ../shared/central.
#
#   scripts/central.sh dir          print the Central folder (run-central.sh lives there), or fail
#   scripts/central.sh start        start Central in a new temporary CENTRAL_ROOT on free ports;
#                                   prints CENTRAL_URL CENTRAL_USER CENTRAL_PASS SERVER_PID
#                                   CENTRAL_ROOT CENTRAL_PORT CENTRAL_PG_PORT (KEY=value, one line)
#   scripts/central.sh stop         stop the Central started with CENTRAL_ROOT (in the environment)
#                                   and delete that folder
#   scripts/central.sh run CMD...   start Central, run CMD with CENTRAL_URL/USER/PASS exported,
#                                   stop Central even when CMD fails; exit with CMD's status.
#                                   Without a Central folder CMD runs alone (the integration
#                                   tests then skip, or fail under CI=true).
#
# The Central folder is the first that has run-central.sh of: $DHSURVEY_CENTRAL_DIR;
# <repo>/../shared/central; when the git origin is a local path (a CI clone of the working
# repository), shared/central beside that origin.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

central_dir() {
  local candidates=()
  [ -n "${DHSURVEY_CENTRAL_DIR:-}" ] && candidates+=("$DHSURVEY_CENTRAL_DIR")
  candidates+=("$REPO/../shared/central")
  local origin
  origin=$(git -C "$REPO" remote get-url origin 2>/dev/null || true)
  origin=${origin#file://}
  if [ -n "$origin" ] && [ -d "$origin" ]; then
    candidates+=("$(cd "$origin/.." && pwd)/shared/central")
  fi
  local dir
  for dir in "${candidates[@]}"; do
    if [ -f "$dir/run-central.sh" ]; then (cd "$dir" && pwd); return 0; fi
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir; dir=$(central_dir) || { echo "no ODK Central folder (see scripts/central.sh)" >&2; return 1; }
  local root; root=$(mktemp -d "${TMPDIR:-/tmp}/dhsurvey-central.XXXXXX")
  chmod 755 "$root"   # PostgreSQL runs as user postgres when we are root
  local port pg_port; port=$(free_port); pg_port=$(free_port)
  local line
  if ! line=$(CENTRAL_ROOT=$root CENTRAL_PORT=$port CENTRAL_PG_PORT=$pg_port \
              bash "$dir/run-central.sh" start | tail -1); then
    CENTRAL_ROOT=$root bash "$dir/run-central.sh" stop >/dev/null 2>&1 || true
    rm -rf "$root"
    return 1
  fi
  echo "$line CENTRAL_ROOT=$root CENTRAL_PORT=$port CENTRAL_PG_PORT=$pg_port"
}

stop() {
  local dir; dir=$(central_dir) || return 0
  local root=${CENTRAL_ROOT:?CENTRAL_ROOT: the folder printed by start}
  case "$root" in "${TMPDIR:-/tmp}"/dhsurvey-central.*) ;; *)
    echo "refusing to stop/delete $root: not made by scripts/central.sh start" >&2; return 1 ;;
  esac
  bash "$dir/run-central.sh" stop || echo "scripts/central.sh: stopping Central failed" >&2
  rm -rf "$root"
}

run() {
  local line
  if ! central_dir >/dev/null; then
    echo "scripts/central.sh: no ODK Central folder; the Central integration tests cannot run" >&2
    "$@"; return
  fi
  line=$(start) || { echo "scripts/central.sh: ODK Central did not start" >&2; "$@"; return; }
  local kv kvs
  read -ra kvs <<< "$line"   # KEY=value words, never globbed
  for kv in "${kvs[@]}"; do export "${kv?}"; done
  trap 'stop >/dev/null' EXIT
  trap 'exit 130' INT TERM   # so that an interrupted run stops Central too
  local status=0
  "$@" || status=$?
  return "$status"
}

case "${1:-}" in
  dir) central_dir || { echo "no ODK Central folder found" >&2; exit 1; } ;;
  start) start ;;
  stop) stop ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 {dir|start|stop|run CMD...}" >&2; exit 2 ;;
esac
