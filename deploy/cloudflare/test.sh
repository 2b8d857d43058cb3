#!/usr/bin/env bash
# Builds every Worker as it is deployed (worker-build --release: wasm-bindgen + wasm-opt),
# prints each one's size and build time, then runs tests/ against them under `wrangler dev`
# (workerd with local D1, KV and R2) with the conformance suite's pinned Python venv.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=toolchain.sh
source "$here/toolchain.sh"

for worker in main agent integrations; do
  echo "==> worker-build --release ($worker)"
  started=$(date +%s)
  (cd "$here/$worker" && worker-build --release)
  wasm="$(ls "$here/$worker"/build/*.wasm | head -n1)"
  echo "    openma-$worker: $(stat -c %s "$wasm") bytes wasm, $(gzip -9c "$wasm" | wc -c) gzipped, built in $(( $(date +%s) - started )) s"
done

python="$(bash "$repo/conformance/venv.sh")"
cd "$here/tests"
exec "$python" -m pytest -q --durations=12 . "$@"
