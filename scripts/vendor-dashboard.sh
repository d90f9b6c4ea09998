#!/usr/bin/env bash
# Refreshes the dashboard's vendored Durable Streams client in
# src/api/dashboard/vendor/: the npm package @durable-streams/client
# (Apache-2.0) bundled by esbuild, with everything it imports, into ONE
# self-contained browser ES module, plus the package's licence.
#
# Needs node, npm and the npm registry. The cargo build never runs this: it
# only reads the committed output (include_str! in src/api/dashboard.rs).
#
# Usage: scripts/vendor-dashboard.sh [CLIENT_VERSION]
set -euo pipefail

client_version="${1:-0.2.7}"
esbuild_version="0.25.12"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/src/api/dashboard/vendor"
work="$(mktemp -d "${TMPDIR:-/tmp}/tg-vendor.XXXXXX")"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund --save-exact \
    "@durable-streams/client@$client_version" "esbuild@$esbuild_version"
pkg="$work/node_modules/@durable-streams/client"
license="$(node -p "require('$pkg/package.json').license")"
echo 'export * from "@durable-streams/client";' >entry.js
npx --no-install esbuild entry.js --bundle --format=esm --platform=browser \
    --target=es2020 --legal-comments=inline --log-level=warning --outfile=bundle.js

mkdir -p "$out"
{
    printf '/*!\n'
    printf ' * @durable-streams/client %s, bundled for the browser by\n' "$client_version"
    printf ' * scripts/vendor-dashboard.sh with esbuild %s. Do not edit: re-run the script.\n' "$esbuild_version"
    printf ' * Its package.json declares %s; the LICENSE file it ships (also in\n' "$license"
    printf ' * durable-streams-client.LICENSE.txt beside this file) reads:\n *\n'
    sed 's/^/ * /; s/ *$//' "$pkg/LICENSE"
    printf ' */\n'
    cat bundle.js
} >"$out/durable-streams-client.js"
cp "$pkg/LICENSE" "$out/durable-streams-client.LICENSE.txt"

# One file: nothing left for a browser to fetch from elsewhere.
if grep -nE '^\s*import\b|\bimport\(' "$out/durable-streams-client.js"; then
    echo "vendor-dashboard: the bundle still imports something" >&2
    exit 1
fi
echo "vendor-dashboard: wrote $out/durable-streams-client.js ($(wc -c <"$out/durable-streams-client.js") bytes)"
