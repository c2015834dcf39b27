#!/usr/bin/env bash
# Builds the JavaScript filter into a WebAssembly component: OUT_DIR/filter.wasm (default: this
# directory). Needs Node.js 20.19 or later and the tools package-lock.json pins, installed here:
#     npm ci
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if ! command -v node >/dev/null 2>&1; then
    echo "error: Node.js is not installed; install Node.js 20.19 or later with npm, then run: npm ci --prefix $here" >&2
    exit 3
fi
componentize="$here/node_modules/.bin/componentize-js"
if [ ! -x "$componentize" ]; then
    echo "error: ComponentizeJS is not installed here; run: npm ci --prefix $here" >&2
    exit 3
fi

# ComponentizeJS directly rather than `jco componentize`: jco's StarlingMonkey path dies here
# reading the WIT ("failed to get path metadata"), and its QuickJS backend (componentize-qjs 0.4.5)
# makes a data hook that always traps (it releases the borrowed `message` only after the call has
# returned, which the component model forbids). See README.md.
#
# -d ...: every optional WASI feature off (stdio, random, clocks, http, fetch-event). This filter
#   uses none, so the component imports nothing but wasmail:plugin/config (+ types, message).
#   Keep `stdio` for console.*, `random` for Math.random/crypto, `clocks` for Date.
# --wit wit: the world (wit/world.wit) and, through wit/deps/, the project's WIT package.
cd "$here"
"$componentize" header_reject.js --wit wit --world-name header-reject \
    -d stdio random clocks http fetch-event -o "$out/filter.wasm.tmp" >/dev/null
mv "$out/filter.wasm.tmp" "$out/filter.wasm"
echo "$out/filter.wasm"
