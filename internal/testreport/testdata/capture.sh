#!/usr/bin/env bash
# capture.sh regenerates the captured test output in this directory from the
# sources under src/. It is not run by the tests; the captures are committed.
# Run from anywhere: bash internal/testreport/testdata/capture.sh
# Needs: go, python3.10-3.13 (pyenv), python3-pytest (Debian), node 20.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/src/." "$work/"
mkdir -p "$here/unittest" "$here/gotest" "$here/tap" "$here/junit"
export GOFLAGS=-count=1

# --- Python unittest -v (what it prints on stderr), several versions.
cd "$work/unittest"
for v in 3.10.13 3.11.7 3.12.1 3.13.0; do
  py=${PYENV_ROOT:-$HOME/.pyenv}/versions/$v/bin/python3
  "$py" -m unittest discover -s tests -v 2>"$here/unittest/py${v%.*}.txt" >/dev/null || true
done
py=${PYENV_ROOT:-$HOME/.pyenv}/versions/3.11.7/bin/python3
"$py" -m unittest discover -s tests -v >"$here/unittest/py3.11-combined.txt" 2>&1 || true
py=${PYENV_ROOT:-$HOME/.pyenv}/versions/3.12.1/bin/python3
"$py" -m unittest discover -s tests -v -b --durations 3 2>"$here/unittest/py3.12-buffer-durations.txt" >/dev/null || true

# --- go test -json / -v / plain on a module that passes, fails, skips,
# has subtests and logs, and a package whose test panics.
cd "$work/gotest/demo"
go test -json ./... >"$here/gotest/demo-json.txt" 2>&1 || true
go test -v ./... >"$here/gotest/demo-v.txt" 2>&1 || true
go test ./... >"$here/gotest/demo-plain.txt" 2>&1 || true
# The -test.v=test2json form: a test binary run directly (native), and the
# same tests compiled to WebAssembly and run under wazero, with and without
# a writable /tmp (without it, ExampleAdd cannot capture stdout and the
# binary exits mid-test).
go test -c -o "$work/calc.test" ./calc
"$work/calc.test" -test.v=test2json >"$here/gotest/demo-test2json-native.txt" 2>&1 || true
GOOS=wasip1 GOARCH=wasm go test -c -o "$work/calc.wasm" ./calc
mkdir -p "$work/wz" "$work/wasmtmp"
cat >"$work/wz/go.mod" <<'MOD'
module wz

go 1.26

require (
	github.com/tetratelabs/wazero v1.12.0
	golang.org/x/sys v0.49.0
)
MOD
cp "$here/../../../go.sum" "$work/wz/go.sum"
(cd "$work/wz" && GOFLAGS=-mod=mod go build -o "$work/wazero" github.com/tetratelabs/wazero/cmd/wazero)
"$work/wazero" run -mount="$work/wasmtmp:/tmp" "$work/calc.wasm" -test.v=test2json \
  >"$here/gotest/demo-test2json-wasm.txt" 2>&1 || true
"$work/wazero" run "$work/calc.wasm" -test.v=test2json \
  >"$here/gotest/demo-test2json-wasm-notmp.txt" 2>&1 || true

# --- Build failures (compile error, vet error) next to a passing package.
cd "$work/gotest/broken"
go test -json ./... >"$here/gotest/broken-json.txt" 2>&1 || true
GODEBUG=gotestjsonbuildtext=1 go test -json ./... >"$here/gotest/broken-json-buildtext.txt" 2>&1 || true
go test -v ./... >"$here/gotest/broken-v.txt" 2>&1 || true

# --- A test killed by -timeout.
cd "$work/gotest/timeout"
go test -timeout=1s -json . >"$here/gotest/timeout-json.txt" 2>&1 || true
go test -timeout=1s -v . >"$here/gotest/timeout-v.txt" 2>&1 || true

# --- TAP (node's test runner; tap14.tap is written by hand) and JUnit XML.
cd "$work/node"
node --test --test-reporter=tap math.test.mjs >"$here/tap/node20.tap" 2>&1 || true
node --test --test-reporter=junit math.test.mjs >"$here/junit/node20.xml" 2>&1 || true
cd "$work/unittest"
cp "$work/pytest/test_plain.py" tests/
rm -f tests/test_broken.py tests/test_setup.py
/usr/bin/python3 -m pytest -q -p no:cacheprovider --junitxml="$here/junit/pytest.xml" tests >/dev/null 2>&1 || true
