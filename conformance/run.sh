#!/usr/bin/env bash
# Run the official-SDK conformance suite against target/debug/openma (or $OPENMA_BIN), with
# target/debug/openma-fake-model (or $OPENMA_FAKE_MODEL_BIN) as its scripted model provider.
# Creates/refreshes conformance/.venv from requirements.txt when needed, then runs
# `pytest -q conformance "$@"` and exits with pytest's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
venv="$here/.venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "conformance: preparing $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
  echo "$want" >"$stamp"
fi

cd "$repo"
exec "$venv/bin/python" -m pytest -q conformance "$@"
