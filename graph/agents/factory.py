"""Choose how each role is played: ``offline`` heuristics, an ``llm``, or ``module:Class`` by import path."""

from __future__ import annotations

import importlib
from typing import Any

from ..configuration import ROLES, RoleSettings, RunConfig
from .capabilities import CapabilityCache, EndpointCapabilities, ProbeError
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


def offline_role(role: str, seed: int = 0) -> Any:
    """The offline heuristic playing ``role`` (also what takes over a verdict or diagnosis whose LLM call
    failed, or when the LLM budget is used up)."""
    if role == "proposer":
        from .offline_proposer import HeuristicProposer

        return HeuristicProposer(seed)
    if role == "critic":
        from .offline_critic import RuleCritic

        return RuleCritic()
    from .offline_diagnostician import StatsDiagnostician

    return StatsDiagnostician()


def _llm_role(role: str, settings: RoleSettings, toolbox: Any, chat_model: Any,
              capabilities: CapabilityCache | None) -> Any:
    """An LLM role on its endpoint (probed once per run through ``capabilities``), or on ``chat_model``."""
    from . import llm
    from .client import AgentError, api_key, make_chat_model

    def member(own: RoleSettings) -> tuple[Any, EndpointCapabilities]:
        if chat_model is not None:
            return chat_model, EndpointCapabilities.assumed(own.model)
        key = api_key(own, role)
        try:
            # The probe's requests are a few tokens each: they get a limit of their own, not the call limit.
            probe_s = max(30.0, min(own.timeout_s, 120.0))
            caps = (capabilities or CapabilityCache()).get(own.base_url, own.model, key, timeout_s=probe_s,
                                                           context_tokens=own.context_tokens,
                                                           key_env=own.api_key_env)
        except ProbeError as exc:
            raise AgentError(f"{role}: {exc}") from None
        return make_chat_model(own, role, caps), caps

    def proposer(own: RoleSettings) -> Any:
        model, caps = member(own)
        return llm.LLMProposer(model, toolbox, own, caps)

    if role == "proposer":
        if settings.models and chat_model is None:
            from .ensemble import make_ensemble

            return make_ensemble(settings, proposer)
        return proposer(settings)
    model, caps = member(settings)
    cls = llm.LLMCritic if role == "critic" else llm.LLMDiagnostician
    return cls(model, settings, caps)


def make_role(role: str, config: RunConfig, *, toolbox: Any = None, chat_model: Any = None,
              capabilities: CapabilityCache | None = None) -> Any:
    """The role object for ``role`` per ``config``; ``chat_model`` replaces ChatOpenAI (tests, custom models);
    ``capabilities`` keeps the run's endpoint probes (one per endpoint)."""
    settings: RoleSettings = getattr(config, role)
    kind = resolve_kind(settings)
    if kind == "offline":
        return offline_role(role, config.seed)
    if kind == "llm" or chat_model is not None:
        return _llm_role(role, settings, toolbox, chat_model, capabilities)
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
    capabilities = CapabilityCache()
    p, c, d = (make_role(r, config, toolbox=toolbox, chat_model=chat_models.get(r), capabilities=capabilities)
               for r in ROLES)
    return p, c, d
