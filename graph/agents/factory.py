"""Choose how each role is played: ``offline`` heuristics, an ``llm``, or ``module:Class`` by import path."""

from __future__ import annotations

import importlib
from typing import Any

from ..configuration import ROLES, RoleSettings, RunConfig
from .roles import Critic, Diagnostician, Proposer


def resolve_kind(settings: RoleSettings) -> str:
    """``auto`` means ``llm`` when the role's API-key variable is set, else ``offline``."""
    return settings.resolved_kind()


def _import_class(spec: str, role: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--{role} {spec}: cannot import it ({exc})") from None


def _offline(role: str, seed: int) -> Any:
    if role == "proposer":
        from .offline_proposer import HeuristicProposer

        return HeuristicProposer(seed)
    if role == "critic":
        from .offline_critic import RuleCritic

        return RuleCritic()
    from .offline_diagnostician import StatsDiagnostician

    return StatsDiagnostician()


def make_role(role: str, config: RunConfig, *, toolbox: Any = None, chat_model: Any = None) -> Any:
    """The role object for ``role`` per ``config``; ``chat_model`` replaces ChatOpenAI (tests, custom models)."""
    settings: RoleSettings = getattr(config, role)
    kind = resolve_kind(settings)
    if kind == "offline":
        return _offline(role, config.seed)
    if kind == "llm" or chat_model is not None:
        from . import llm

        model = chat_model if chat_model is not None else llm.make_chat_model(settings, role)
        if role == "proposer":
            return llm.LLMProposer(model, toolbox, settings)
        if role == "critic":
            return llm.LLMCritic(model, settings)
        return llm.LLMDiagnostician(model, settings)
    if ":" in kind:
        cls = _import_class(kind, role)
        try:
            return cls(seed=config.seed) if role == "proposer" else cls()
        except TypeError:
            return cls()
    raise ValueError(f"--{role} must be offline, llm or module:Class, got {kind!r}")


def make_roles(config: RunConfig, *, toolbox: Any = None,
               chat_models: dict[str, Any] | None = None) -> tuple[Proposer, Critic, Diagnostician]:
    """The three roles of a run."""
    chat_models = chat_models or {}
    p, c, d = (make_role(r, config, toolbox=toolbox, chat_model=chat_models.get(r)) for r in ROLES)
    return p, c, d
