#!/usr/bin/env bash
# Every test of the project, in the order CI runs them:
#   1. unit, property and story tests (real server, SQLite and PostgreSQL) with cargo nextest
#   2. the core and console crates build for wasm32-unknown-unknown (the Cloudflare Workers target)
#   3. the official-SDK conformance suite (anthropic==2.10.0) and schemathesis against a real server
#   4. the Cloudflare Workers, built with worker-build and tested under `wrangler dev` (deploy/cloudflare)
# PostgreSQL stories run when OPENMA_TEST_POSTGRES_URL is set (or a server answers on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${OPENMA_TEST_POSTGRES_URL:-}" ]] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  export OPENMA_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"
fi
echo "==> PostgreSQL for story tests: ${OPENMA_TEST_POSTGRES_URL:-not configured (PostgreSQL stories skip)}"

echo "==> building (debug profile, once for all suites)"
cargo build --workspace --tests --bins --locked

echo "==> unit, property and story tests"
cargo nextest run --workspace --locked --no-fail-fast

echo "==> openma-core and openma-console build for wasm32-unknown-unknown"
cargo check -p openma-core -p openma-console --target wasm32-unknown-unknown --locked

echo "==> official-SDK conformance and schemathesis"
OPENMA_BIN="$PWD/target/debug/openma" bash conformance/run.sh

echo "==> Cloudflare Workers: worker-build and wrangler dev (local D1, KV, R2)"
bash deploy/cloudflare/test.sh
