#!/usr/bin/env bash
# Install what the collector tests (tests/collect) need on a fresh CPU machine; idempotent and quick.
#
# torch is pinned to 2.13.0: on this machine kind pip takes that CPU wheel from /opt/wheels; any other
# version (or plain `torch`) would pull a CUDA build of several GB from PyPI.
# transformers, tokenizers and math-verify are the rest of the `collect` extra; httpx is the HTTP client
# of the OpenAI-compatible backend (already a core dependency's dependency, pinned here to be sure).
set -euo pipefail
PYTHON="${PYTHON:-python3}"

have() {  # have MODULE: importable already?
    "$PYTHON" -c "import $1" >/dev/null 2>&1
}

want=()
have torch || want+=("torch==2.13.0")
have transformers || want+=("transformers>=4.51")
have tokenizers || want+=("tokenizers")
have math_verify || want+=("math-verify")
have httpx || want+=("httpx")
have gguf || want+=("gguf")  # transformers reads GGUF weights (the local SmolLM2 of .ci/llm-setup.sh) through it
have accelerate || want+=("accelerate")

if [ "${#want[@]}" -gt 0 ]; then
    echo "collect-setup: installing ${want[*]}"
    # A constraint keeps the resolution of the others from replacing torch (installed or pinned).
    torch_version="$("$PYTHON" -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || echo 2.13.0)"
    constraints="$(mktemp)"
    trap 'rm -f "$constraints"' EXIT
    echo "torch==$torch_version" >"$constraints"
    "$PYTHON" -m pip install --quiet -c "$constraints" "${want[@]}"
else
    echo "collect-setup: torch, transformers, tokenizers, math-verify, httpx, gguf and accelerate already installed"
fi
"$PYTHON" -c "import torch, transformers, tokenizers, math_verify, httpx, gguf, accelerate; \
print('collect-setup: torch', torch.__version__, '| transformers', transformers.__version__)"
