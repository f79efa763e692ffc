#!/usr/bin/env bash
# Gateway benchmark: Direct (load generator -> mock vendor), `arcllm serve` with
# retry(fallback(adapter)) and LiteLLM proxy, side by side on one machine. Builds the tools,
# creates the LiteLLM venv on first use (bench/gateway/.venv, pinned by
# litellm-requirements.txt), then runs run.py. Method and settings: bench/gateway/README.md.
#
#   bench/gateway/run.sh [--quick] [--systems direct,arcllm,litellm] [--duration S] ...
#
# About 10 minutes (--quick: about 3), after the release build. Needs taskset
# (util-linux) and python3 with venv.
set -euo pipefail
cd "$(dirname "$0")/../.."

cargo build --release --workspace --bins

venv=bench/gateway/.venv
if ! "$venv/bin/python" -c 'import importlib.metadata as m; assert m.version("litellm") == "1.110.2"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r bench/gateway/litellm-requirements.txt
fi

exec python3 bench/gateway/run.py "$@"
