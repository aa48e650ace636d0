#!/usr/bin/env bash
# Set up autotts-graph on a fresh Debian machine (run as root; idempotent):
# Python package with its dev extras, the Docker engine and bubblewrap, the offline sandbox image,
# the CPU-only collector test dependencies, the headless chromium the run browser's tests drive,
# and a local OpenAI-compatible LLM server with a small model.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

echo "setup: installing the Python package and its dependencies"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[dev]"

bash .ci/sandbox-setup.sh
if [ -f .ci/collect-setup.sh ]; then
    bash .ci/collect-setup.sh
fi
bash .ci/browser-setup.sh
# The real local LLM of the agent and collector tests (llama-cpp-python + SmolLM2-135M; compiles once).
bash .ci/llm-setup.sh
echo "setup: done"
