#!/usr/bin/env bash
# Runs every Pontus test: the race detector everywhere, except the
# packages dominated by the pure-Go SQLite driver, which is ~10x slower
# under -race and is exercised without it.
set -euo pipefail
cd "$(dirname "$0")"
go test -race -count=1 -timeout 30m $(go list ./... | grep -v -e /internal/e2e$ -e /controlplane/store$) "$@"
go test -count=1 -timeout 30m ./internal/e2e/ ./controlplane/store/ "$@"
# The plugin SDK is a module of its own, which ./... does not reach.
(cd plugins/sdk && go test -race -count=1 ./... "$@")
