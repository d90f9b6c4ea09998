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

export PIP_DISABLE_PIP_VERSION_CHECK=1
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet \
    -r "$client/requirements-test.txt" \
    -r "$repo_root/scripts/requirements-emulators.txt" \
    -e "$client[test]"

echo "py-env: $("$venv/bin/python" --version) in $venv"
