#!/bin/sh
# The unary RPCs of the Pontus API, called with plain curl and JSON.
# Usage: examples/curl.sh [CONTROLPLANE_URL] [COMMIT [REPO BRANCH]]
# With tokens set on the control plane, export PONTUS_USER_TOKEN (and
# PONTUS_OBSERVER_TOKEN for ReportCommits) first.
set -eu
CP=${1:-http://127.0.0.1:8888}

call() { # call SERVICE/METHOD JSON [TOKEN]
  echo "== $1"
  if [ -n "${3:-}" ]; then
    curl -sS --fail-with-body -H 'Content-Type: application/json' -H "Authorization: Bearer $3" \
      --data "$2" "$CP/pontus.v1.$1"
  else
    curl -sS --fail-with-body -H 'Content-Type: application/json' --data "$2" "$CP/pontus.v1.$1"
  fi
  echo
}

USER_TOKEN=${PONTUS_USER_TOKEN:-}
call BuildService/ListBuilds '{"limit": 5}' "$USER_TOKEN"
call BuildService/ListRunners '{}' "$USER_TOKEN"
call BuildService/ListTests '{"limit": 5, "sort": "TEST_SORT_FLAKIEST"}' "$USER_TOKEN"
if [ -n "${2:-}" ]; then
  call BuildService/GetBuild "{\"commit\": \"$2\"}" "$USER_TOKEN"
  # Re-run the commit, then cancel the new build by its id.
  out=$(call BuildService/TriggerBuild "{\"commit\": \"$2\"}" "$USER_TOKEN")
  echo "$out"
  id=$(printf '%s' "$out" | sed -n 's/.*"build":{"id":"\([0-9]*\)".*/\1/p')
  call BuildService/CancelBuild "{\"buildId\": \"$id\"}" "$USER_TOKEN"
fi
if [ -n "${4:-}" ]; then
  # What an observer or a git hook sends (idempotent: a known commit keeps its build).
  call ObserverService/ReportCommits "{\"repo\": \"$3\", \"branch\": \"$4\", \"commits\": [\"$2\"], \"keepCursor\": true}" \
    "${PONTUS_OBSERVER_TOKEN:-}"
fi
# Health, through the Connect protocol:
echo "== grpc.health.v1.Health/Check"
curl -sS -H 'Content-Type: application/json' --data '{}' "$CP/grpc.health.v1.Health/Check"
echo
