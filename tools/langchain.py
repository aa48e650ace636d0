"""The tools as LangChain ``StructuredTool``s bound to a ToolContext, for the graph's own agents.

Same registry, descriptions, input models and functions as the MCP server (``tools/server.py``): the
model sees the tool's JSON arguments, the tool returns the result as JSON text (the content) and the
pydantic model (the artifact). Errors the model can act on (unknown environment, bad argument, failed
query) come back as the tool's text instead of raising, so an agent can correct itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

from autotts_graph.store.db import StoreError
from pydantic import BaseModel, ValidationError

from .context import ToolContext
from .server import TOOL_SPECS, TOOLS_BY_NAME, ToolSpec, thread_safe

MAX_CONTENT_CHARS = 60_000


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
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"invalid argument {'.'.join(str(x) for x in first['loc']) or 'input'}: {first['msg']}"
    return f"invalid arguments: {exc}"


def _make_tool(spec: ToolSpec, ctx: ToolContext) -> Any:
    from langchain_core.tools import StructuredTool, ToolException

    def run(**kwargs: Any) -> tuple[str, BaseModel]:
        try:
            inp = spec.input_model(**kwargs)
            result = spec.fn(ctx, inp)
        except ValidationError as exc:
            raise ToolException(_validation_message(exc)) from None
        except (StoreError, ValueError, FileNotFoundError) as exc:
            raise ToolException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
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
    wanted = list(names) if names is not None else [t.name for t in TOOL_SPECS]
    unknown = [n for n in wanted if n not in TOOLS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOLS_BY_NAME)}")
    thread_safe(ctx)
    return [_make_tool(TOOLS_BY_NAME[n], ctx) for n in wanted]
