#!/usr/bin/env bash
# Run the official-SDK conformance suite against target/debug/openma (or $OPENMA_BIN), with
# target/debug/openma-fake-model (or $OPENMA_FAKE_MODEL_BIN) as its scripted model provider.
# Prepares conformance/.venv (venv.sh), then runs
# `pytest -q conformance "$@"` and exits with pytest's status.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
python="$(bash "$here/venv.sh")"

cd "$repo"
exec "$python" -m pytest -q conformance "$@"
