#!/usr/bin/env bash
# Create or update the repo's Python venv (.venv) with the gateway client, its test
# tools and the loopback emulators (SeaweedFS, moto) the integration tests use.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TG_TEST_VENV:-$repo_root/.venv}"
client="$repo_root/clients/python"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi

# The test pins name the newest SDK; TG_TEST_SDK_VERSION installs another
# (scripts/test also runs the suite against the oldest the client supports).
requirements="$client/requirements-test.txt"
if [[ -n "${TG_TEST_SDK_VERSION:-}" ]]; then
    requirements="$(mktemp)"
    trap 'rm -f "$requirements"' EXIT
    sed "s/^claude-agent-sdk==.*/claude-agent-sdk==$TG_TEST_SDK_VERSION/" \
        "$client/requirements-test.txt" >"$requirements"
fi

# The emulators live in the main venv only.
emulators=(-r "$repo_root/scripts/requirements-emulators.txt")
if [[ -n "${TG_TEST_SDK_VERSION:-}" ]]; then
    emulators=()
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    -r "$requirements" \
    "${emulators[@]}" \
    -e "$client[test]"

sdk="$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("claude-agent-sdk"))')"
echo "py-env: $("$venv/bin/python" --version), claude-agent-sdk $sdk in $venv"
