#!/usr/bin/env bash
# Set up autotts-graph on a fresh Debian machine (run as root; idempotent):
# Python package with its dev extras, the Docker engine and bubblewrap, the offline sandbox image,
# the CPU-only collector test dependencies, and the headless chromium the run browser's tests drive.
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
echo "setup: done"
