"""Tools: list and describe the replay environments the caller may see."""

from __future__ import annotations

from typing import Any

from autotts_graph.store.trajectories import EnvironmentInfo, QuestionStats, describe_environment
from pydantic import BaseModel, Field

from .context import ToolContext


class EnvironmentList(BaseModel):
    environments: list[EnvironmentInfo]


class DescribeInput(BaseModel):
    env: str = Field(description="Environment name, e.g. 'Qwen3-4B/aime24'.")


class EnvironmentDescription(BaseModel):
    """Summary plus per-question statistics (gold answers included: they are the search set's labels)."""

    info: EnvironmentInfo
    source: str
    spec: dict[str, Any]
    questions: list[QuestionStats]


def list_visible_environments(ctx: ToolContext) -> EnvironmentList:
    """Every environment the caller may see."""
    return EnvironmentList(environments=ctx.environments())


def describe_visible_environment(ctx: ToolContext, inp: DescribeInput) -> EnvironmentDescription:
    """One visible environment in detail."""
    ctx.require_visible([inp.env])
    d = describe_environment(ctx.store, inp.env)
    info = EnvironmentInfo(**d.model_dump(include=set(EnvironmentInfo.model_fields)))
    return EnvironmentDescription(info=info, source=d.source or "", spec=d.spec, questions=d.questions)
