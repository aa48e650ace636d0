"""The GPU collector: sample reasoning branches, probe them, and store them as a replay environment.

Heavy dependencies (torch, transformers, vLLM, math-verify) are imported lazily by the backends, so
importing this package costs nothing for the core.
"""
