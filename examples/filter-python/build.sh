#!/usr/bin/env bash
# Builds the Python filter into a WebAssembly component: OUT_DIR/filter.wasm (default: this
# directory). Needs componentize-py at the version requirements.txt pins:
#     pip install -r requirements.txt
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

want="$(sed -n 's/^componentize-py==//p' "$here/requirements.txt")"
if ! command -v componentize-py >/dev/null 2>&1; then
    echo "error: componentize-py is not installed; install it with: pip install componentize-py==$want" >&2
    exit 3
fi
have="$(componentize-py --version | awk '{print $2}')"
if [ "$have" != "$want" ]; then
    echo "error: componentize-py $have is installed but this example pins $want; install it with: pip install componentize-py==$want" >&2
    exit 3
fi

# componentize-py runs the app once at build time (and writes __pycache__ next to it), so it
# gets a copy of the one source file rather than this directory.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp "$here/header_reject.py" "$stage/"

# -d wit: the world (wit/world.wit) and, through wit/deps/, the project's WIT package.
componentize-py --quiet -d "$here/wit" -w header-reject \
    componentize -p "$stage" header_reject -o "$stage/filter.wasm"
mv "$stage/filter.wasm" "$out/filter.wasm"
echo "$out/filter.wasm"
