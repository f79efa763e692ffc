#!/usr/bin/env bash
# Whole-process cold start of `arcllm invoke` against a loopback OpenAI-chat stub, beside
# curl posting to the same stub. Prints the median wall and CPU (user+sys) time of RUNS
# runs of each (default 15). Method and results: docs/benchmarks.md, "Cold start".
#
#   bench/startup.sh [path/to/arcllm]      (default: target/release/arcllm)
set -euo pipefail
cd "$(dirname "$0")/.."
ARCLLM=${1:-target/release/arcllm}
RUNS=${RUNS:-15}
[ -x "$ARCLLM" ] || { echo "build it first: cargo build --release -p arcllm-cli" >&2; exit 1; }

work=$(mktemp -d)
port_file="$work/port"
python3 bench/startup_server.py >"$port_file" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do [ -s "$port_file" ] && break; sleep 0.1; done
port=$(cat "$port_file")

mkdir "$work/providers"
cat >"$work/providers/local.toml" <<TOML
[provider]
api_format = "openai-chat"
base_url = "http://127.0.0.1:$port"
api_key_required = false
default_model = "local-model"
TOML
printf '[defaults]\nprovider = "local"\n' >"$work/config.toml"
body='{"model":"local-model","messages":[{"role":"user","content":"hi"}]}'
# A private, empty compile cache: third-party modules are not involved here, and a
# user's cache should neither help nor be touched.
export XDG_CACHE_HOME="$work/cache"

measure() {
    python3 bench/measure.py "$1" "$RUNS" "${@:2}"
}

echo "median of $RUNS runs each; loopback stub on port $port"
measure "curl" curl -s -X POST -H 'content-type: application/json' -d "$body" \
    "http://127.0.0.1:$port/v1/chat/completions"
measure "arcllm invoke (no module)" "$ARCLLM" invoke --config "$work/config.toml" hi
measure "arcllm invoke (retry+fallback)" "$ARCLLM" invoke --config "$work/config.toml" \
    --retry --fallback local/other hi
