#!/bin/sh
# The unary RPCs of the Pontus API, called with plain curl and JSON.
# Usage: examples/curl.sh [CONTROLPLANE_URL] [COMMIT]
# With a user token set on the control plane, export PONTUS_USER_TOKEN first.
set -eu
CP=${1:-http://127.0.0.1:8888}
AUTH=""
if [ -n "${PONTUS_USER_TOKEN:-}" ]; then AUTH="Authorization: Bearer $PONTUS_USER_TOKEN"; fi

call() { # call SERVICE/METHOD JSON
  echo "== $1"
  curl -sS --fail-with-body -H 'Content-Type: application/json' ${AUTH:+-H "$AUTH"} \
    --data "$2" "$CP/pontus.v1.$1"
  echo
}

call BuildService/ListBuilds '{"limit": 5}'
call BuildService/ListRunners '{}'
if [ -n "${2:-}" ]; then
  call BuildService/GetBuild "{\"commit\": \"$2\"}"
  call BuildService/TriggerBuild "{\"commit\": \"$2\"}"
fi
# Health, through the Connect protocol:
echo "== grpc.health.v1.Health/Check"
curl -sS -H 'Content-Type: application/json' --data '{}' "$CP/grpc.health.v1.Health/Check"
echo
