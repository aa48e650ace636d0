"""The replay runtime: everything a controller needs, stdlib + numpy only.

Inside the sandbox this directory is the package ``autotts_runtime``; on the host it is
``autotts_graph.sandbox.runtime`` and is aliased to ``autotts_runtime`` so controller sources import
one name everywhere: ``from autotts_runtime import Controller, vote_stats, ...``.
"""

import sys as _sys

from .bayes import bayes_posterior
from .contract import MAX_BRANCHES, Controller, TraceRecorder
from .primitives import (
    beta_confidence,
    majority,
    safe_full_read,
    safe_probe_more,
    safe_probe_new,
    vote_stats,
    weighted_vote,
)

_sys.modules.setdefault("autotts_runtime", _sys.modules[__name__])
del _sys  # controllers import names from here: re-export nothing but the contract

__all__ = [
    "MAX_BRANCHES",
    "Controller",
    "TraceRecorder",
    "bayes_posterior",
    "beta_confidence",
    "majority",
    "safe_full_read",
    "safe_probe_more",
    "safe_probe_new",
    "vote_stats",
    "weighted_vote",
]
