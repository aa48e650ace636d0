"""Tools: list and describe the replay environments the caller may see."""

from __future__ import annotations

from typing import Any

from autotts_graph.store.trajectories import EnvironmentInfo, describe_environment
from pydantic import BaseModel, Field

from .context import ToolContext

ENV_NAME_CHARS = 200  # the longest environment name a tool accepts ('Model/dataset')


class EnvironmentList(BaseModel):
    environments: list[EnvironmentInfo]


class DescribeInput(BaseModel):
    env: str = Field(max_length=ENV_NAME_CHARS, description="Environment name, e.g. 'Qwen3-4B/aime24'.")


class QuestionSummary(BaseModel):
    """Statistics of one question's recorded branches, and whether their most common final answer is right."""

    question_index: int
    branches: int = Field(description="Recorded branches.")
    mean_tokens: float = Field(description="Mean branch length in tokens.")
    mean_probes: float = Field(description="Mean probes (chunks) per branch.")
    branch_accuracy: float = Field(description="Fraction of branches whose final answer is correct.")
    err_probe_fraction: float = Field(description="Fraction of probes with no extractable answer ('ERR').")
    modal_final_answer: str | None = Field(description="The most common final answer of the branches.")
    modal_final_correct: bool = Field(description="Whether that most common final answer is correct.")
    gold_answer: str | None = Field(default=None, description="The gold answer: only on a server started with "
                                    "--expose-gold (trusted local analysis), else null.")


class EnvironmentDescription(BaseModel):
    """Summary plus per-question statistics: correctness of the branches' answers, not the gold answers (those
    stay on the host unless the server exposes them)."""

    info: EnvironmentInfo
    source: str
    spec: dict[str, Any]
    questions: list[QuestionSummary]


def list_visible_environments(ctx: ToolContext) -> EnvironmentList:
    """Every environment the caller may see."""
    return EnvironmentList(environments=ctx.environments())


def describe_visible_environment(ctx: ToolContext, inp: DescribeInput) -> EnvironmentDescription:
    """One visible environment in detail (gold answers only when the context exposes them)."""
    ctx.require_visible([inp.env])
    d = describe_environment(ctx.store, inp.env)
    info = EnvironmentInfo(**d.model_dump(include=set(EnvironmentInfo.model_fields)))
    questions = [QuestionSummary(**q.model_dump(exclude={"gold_answer"}),
                                 gold_answer=q.gold_answer if ctx.expose_gold else None) for q in d.questions]
    return EnvironmentDescription(info=info, source=d.source or "", spec=d.spec, questions=questions)
