#!/usr/bin/env bash
# Creates/refreshes conformance/.venv from requirements.txt when needed (the pinned official
# SDK, pytest, schemathesis) and prints its python. Shared by every Python test suite.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "conformance: preparing $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
