"""The tools as LangChain ``StructuredTool``s bound to a ToolContext, for the graph's own agents.

Same registry (``tools/registry.py``), descriptions, input models and functions as the MCP server: the
model sees the tool's JSON arguments, the tool returns the result as JSON text (the content) and the
pydantic model (the artifact). Errors the model can act on (unknown environment, bad argument, failed
query) come back as the tool's text instead of raising, so an agent can correct itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from .context import ToolContext
from .registry import USER_ERRORS, ToolSpec, one_line_error, select, thread_safe
from .traces import MAX_PAGE_CHARS

# What a model reads of one answer: a whole page of traces (the registry's page cap) plus its envelope.
MAX_CONTENT_CHARS = MAX_PAGE_CHARS + 4_000


def _content(result: BaseModel) -> str:
    """JSON text of a result, shortened for the model when huge (the artifact keeps everything)."""
    text = result.model_dump_json()
    if len(text) > MAX_CONTENT_CHARS:
        note = (f"output cut at {MAX_CONTENT_CHARS} of {len(text)} characters; ask for less (filters, a "
                "smaller page)")
        text = text[:MAX_CONTENT_CHARS] + json.dumps({"note": note})
    return text


def _validation_message(exc: Exception) -> str:
    """One line naming the bad argument, for the model to correct its call."""
    return one_line_error(exc) if isinstance(exc, ValidationError) else f"invalid arguments: {exc}"


def langchain_tool(spec: ToolSpec, ctx: ToolContext) -> Any:
    """One registry (or run-scoped) tool as a LangChain StructuredTool bound to ``ctx``: JSON text content,
    the pydantic result as artifact, caller errors as the tool's one-line answer."""
    from langchain_core.tools import StructuredTool, ToolException

    def run(**kwargs: Any) -> tuple[str, BaseModel]:
        try:
            result = spec.call(ctx, kwargs)  # only the arguments the model gave: run-scoped defaults apply
        except USER_ERRORS as exc:
            raise ToolException(one_line_error(exc)) from None
        return _content(result), result

    async def arun(**kwargs: Any) -> tuple[str, BaseModel]:
        return await asyncio.to_thread(run, **kwargs)

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=spec.name, description=spec.description,
        args_schema=spec.input_model, response_format="content_and_artifact", handle_tool_error=True,
        handle_validation_error=_validation_message)


def make_langchain_tools(ctx: ToolContext, names: Iterable[str] | None = None) -> list[Any]:
    """LangChain tools for ``names`` (default: all) bound to ``ctx`` (its store is made thread-safe).

    Held-out visibility follows ``ctx.expose_heldout`` exactly as on the MCP server.
    """
    specs = select(names)
    thread_safe(ctx)
    return [langchain_tool(spec, ctx) for spec in specs]
