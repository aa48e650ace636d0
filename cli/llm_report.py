"""The LLM part of a run's report: calls, tokens and time per role (the servers' usage figures, from the ledger's
``llm_calls``) and what each endpoint's probe found (``graph/agents/capabilities.py``, kept in the run's report).
"""

from __future__ import annotations

from typing import Any

from autotts_graph.graph.configuration import ROLES
from autotts_graph.store.db import Store
from autotts_graph.store.ledger import llm_calls, llm_usage_by_role
from autotts_graph.store.rows import RunRow

ROLE_ORDER = ROLES  # the one list of roles (graph/configuration.py)


def _failed(row: dict[str, Any]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(row["failed"].items())) or "0"


def llm_line(store: Store, run_id: str) -> str:
    """One line per run for the CLI: calls, tokens and seconds per role ('' without LLM calls)."""
    usage = llm_usage_by_role(store, run_id)
    parts = [f"{role} {r['calls']} calls, {r['prompt_tokens'] + r['completion_tokens']:,} tokens, "
             f"{r['seconds']:.0f} s" + (f" ({_failed(r)} failed)" if r["failed"] else "")
             for role, r in sorted(usage.items(), key=lambda kv: _rank(kv[0]))]
    return "; ".join(parts)


def _rank(role: str) -> int:
    return ROLE_ORDER.index(role) if role in ROLE_ORDER else len(ROLE_ORDER)


def llm_sections(store: Store, run: RunRow) -> list[str]:
    """Markdown sections: LLM calls per role, and the endpoints as probed (nothing for a run without LLMs)."""
    usage = llm_usage_by_role(store, run.run_id)
    endpoints = (run.report or {}).get("endpoints") or []
    lines: list[str] = []
    if usage:
        lines += ["## LLM calls per role", "",
                  "Tokens are the servers' usage figures; a call cut off before the server reported any is counted by "
                  "the client (*estimated*).", "",
                  "| role | models | calls | failed | prompt tokens | completion tokens | seconds | mean s | max s | "
                  "estimated |", "|---|---|---|---|---|---|---|---|---|---|"]
        for role, r in sorted(usage.items(), key=lambda kv: _rank(kv[0])):
            lines.append(f"| {role} | {', '.join(r['models'])} | {r['calls']} | {_failed(r)} | "
                         f"{r['prompt_tokens']:,} | {r['completion_tokens']:,} | {r['seconds']:.1f} | "
                         f"{r['mean_seconds']:.1f} | {r['max_seconds']:.1f} | {r['estimated']} |")
        lines.append("")
        failed = [c for c in llm_calls(store, run.run_id) if c.outcome != "ok"]
        if failed:
            lines += ["## Failed LLM answers", "", "Each is one proposal's, verdict's or diagnosis' failure (a "
                      "verdict or diagnosis is then made by the offline role); the run went on.", "",
                      "| generation | slot | node | candidate | reason | detail |", "|---|---|---|---|---|---|"]
            for c in failed[:60]:
                detail = c.error.replace("|", "/").replace("\n", " ")[:200]
                lines.append(f"| {c.round} | {'' if c.slot is None else c.slot} | {c.node} | {c.candidate_id or ''} | "
                             f"{c.outcome} | {detail} |")
            if len(failed) > 60:
                lines.append(f"| … | | | | {len(failed) - 60} more | |")
            lines.append("")
    if endpoints:
        lines += ["## LLM endpoints", "", "What each endpoint supports, as probed when the run (or its resume) "
                  "started.", "",
                  "| endpoint | model | context | structured output | forced tool | json_schema | auto tools | "
                  "bounded tool calls | tool results kept | stream usage | probe s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        from autotts_graph.graph.agents.capabilities import EndpointCapabilities

        yes = {True: "yes", False: "no"}
        for e in endpoints:
            ctx = f"{e['context_tokens']:,} ({e['context_source']})" if e.get("context_tokens") else "unknown"
            method = EndpointCapabilities.model_validate(e).structured_method()
            lines.append(f"| {e['base_url']} | {e['model']} | {ctx} | {method} | {yes[e['forced_tool']]} | "
                         f"{yes[e['json_schema']]} | {yes[e['auto_tools']]} | {yes[e['auto_tools_bounded']]} | "
                         f"{yes[e['tool_results_kept']]} | {yes[e['stream_usage']]} | {e['probe_seconds']:.1f} |")
        lines.append("")
    return lines
