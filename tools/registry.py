"""The tool registry: one list of tools, served over MCP (``tools/server.py``) and bound to the graph's own
agents (``tools/langchain.py``, ``graph/agents/tools.py``) alike.

Every tool is a ``ToolSpec``: a name, a description written for an agent that has never seen this project,
a pydantic input model, a pydantic output model and a function ``fn(ctx, inp)``. The same names, models,
trace paging and limits reach every caller; only the transport differs. Held-out environments are invisible
unless the context exposes them, and inside a discovery run (``ToolContext.run``) an evaluation or a
baseline left without betas, seeds or trace seeds (``None``) gets the run's protocol rather than the
stand-alone defaults. Nothing here imports the MCP SDK or LangChain.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from autotts_graph.sandbox.static_checks import MAX_SOURCE_CHARS
from autotts_graph.store.db import Store, StoreError
from autotts_graph.store.trajectories import EnvironmentInfo, list_environments
from pydantic import BaseModel, Field, ValidationError

from .baselines import METHODS, BaselineInput, BaselineRow, run_baseline
from .context import ToolContext
from .contract import ContractDoc, controller_contract
from .environments import (
    ENV_NAME_CHARS,
    DescribeInput,
    EnvironmentDescription,
    EnvironmentList,
    describe_visible_environment,
    list_visible_environments,
)
from .evaluate import DEFAULT_BETAS, EvaluateInput, EvaluationSummary, evaluate_controller
from .query_store import SCHEMA_HELP, QueryInput, QueryResult, query_store, store_state
from .traces import (
    MAX_PAGE,
    EvaluationDetail,
    GetEvaluationInput,
    GetTracesInput,
    TracePage,
    get_evaluation,
    get_traces,
)
from .validate import ValidateInput, ValidationReport, validate_controller

STANDALONE_SEEDS = 100  # the reference protocol, for a caller outside a discovery run
# Errors a caller can act on (bad argument, unknown name, failed query): shown as one line, not a crash.
USER_ERRORS: tuple[type[Exception], ...] = (StoreError, ValueError, ValidationError, FileNotFoundError)
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)\.\s")  # a full stop, not the one of "e.g." or "i.e."


def one_line_error(exc: BaseException) -> str:
    """One line naming what was wrong with a call (the first invalid argument, or the error's first line)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "input"
        return f"invalid argument {where}: {first['msg']}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------------
# Memoised store reads for concurrent calls (Store.connect already serialises connections in a process).


class _Memo:
    """Results computed from the store, reused until the store file changes (any write changes it)."""

    MAX_ENTRIES = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple, tuple[tuple, Any]] = {}

    def get(self, store: Store, key: tuple, compute: Callable[[], Any]) -> Any:
        state = store_state(store.path)  # taken before computing: a write meanwhile invalidates the entry
        full_key = (str(store.path.resolve()), *key)
        with self._lock:
            hit = self._data.get(full_key)
            if hit is not None and hit[0] == state:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._data) >= self.MAX_ENTRIES:
                self._data.clear()
            self._data[full_key] = (state, value)
        return value


_MEMO = _Memo()


class ServingContext(ToolContext):
    """A ToolContext for concurrent tool calls: the environment list memoised per store state (nearly every
    tool checks visibility, and each listing otherwise opens the store)."""

    def environments(self) -> list[EnvironmentInfo]:
        """The environments this caller may see (recomputed after any write to the store)."""
        every = _MEMO.get(self.store, ("environments",), lambda: list_environments(self.store))
        return [e for e in every if self.visible(e)]


def thread_safe(ctx: ToolContext) -> ToolContext:
    """Prepare a context for concurrent calls, in place (same object, same sandbox backend): a plain
    ToolContext becomes a ServingContext (memoised environment list). Returns the context."""
    if type(ctx) is ToolContext:  # a caller's own subclass keeps its class (and its environments())
        ctx.__class__ = ServingContext
    return ctx


# --------------------------------------------------------------------------------------------------------
# Inputs and outputs of the tools that wrap a lower-level function.


EnvName = Annotated[str, Field(min_length=1, max_length=ENV_NAME_CHARS)]


class NoInput(BaseModel):
    """This tool takes no arguments."""


class EvaluateToolInput(BaseModel):
    """Evaluate a controller source over environments and betas."""

    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS,
                        description="Complete Python source of one autotts_runtime.Controller subclass "
                                    "(see controller_contract).")
    envs: list[EnvName] = Field(min_length=1, max_length=16,
                                description="Environment names from list_environments, e.g. ['Qwen3-4B/aime24'].")
    # None: the run's protocol inside a discovery run (ToolContext.run), else the stand-alone default. Explicit
    # None rather than "left out": not every transport tells a left-out argument from its default.
    betas: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        default=None, min_length=1, max_length=21,
        description="Values of the knob beta in [0, 1]; default 0, 0.1, ..., 1 (inside a discovery run: the "
                    "run's quick betas).")
    seeds: int | None = Field(default=None, ge=1, le=1000,
                              description=f"Shuffle seeds 0..seeds-1; default {STANDALONE_SEEDS}, the reference "
                                          "protocol (inside a discovery run: the run's quick seeds); 5-20 to "
                                          "iterate.")
    trace_seeds: int | None = Field(default=None, ge=0, le=10,
                                    description="Keep full per-question traces for seeds 0..trace_seeds-1; default 1 "
                                                "(inside a discovery run: the run's).")
    label: str = Field(default="", max_length=200, description="Free text recorded with the evaluation.")


class BaselineToolInput(BaseModel):
    """Evaluate a reference baseline over its budget sweep."""

    method: Literal[tuple(METHODS)] = Field(  # type: ignore[valid-type]
        description="; ".join(f"{name}: {m.about}" for name, m in METHODS.items()) + ".")
    envs: list[EnvName] = Field(min_length=1, max_length=16, description="Environment names.")
    configs: list[dict[str, Any]] | None = Field(
        default=None, max_length=32,
        description="Explicit configurations in the method's own parameters: sc {'k': 8}; asc "
                    "{'max_samples': 16, 'threshold': 0.95}; esc {'max_samples': 32, 'window_size': 8}; "
                    "parallel_probe {'num_chains': 16, 'T': 40, 'prune_patience': 7, 'warm_up': 15}; cmc and "
                    "every other method {'beta': 0.5} (short1/short3 get their m, bayes_fit its prior fitted on the "
                    "search split). Default: the method's reference budget sweep.")
    seeds: int | None = Field(default=None, ge=1, le=1000,
                              description=f"Shuffle seeds 0..seeds-1; default {STANDALONE_SEEDS} (inside a discovery "
                                          "run: the run's quick seeds).")
    trace_seeds: int = Field(default=0, ge=0, le=10, description="Keep traces for seeds 0..trace_seeds-1.")


class BaselineResult(BaseModel):
    """A baseline sweep: the evaluation summary and one labelled row per (configuration, environment)."""

    summary: EvaluationSummary
    rows: list[BaselineRow]


BASELINE_KEYS = {name: m.knobs for name, m in METHODS.items()}


STANDALONE = {"betas": list(DEFAULT_BETAS), "seeds": STANDALONE_SEEDS, "trace_seeds": 1}


def scoped(ctx: ToolContext, value: Any, name: str) -> Any:
    """``value`` when the caller gave one; else the run's default inside a discovery run (``ctx.run``), else
    the stand-alone default."""
    if value is not None:
        return value
    default = getattr(ctx.run, name) if ctx.run is not None else STANDALONE[name]
    return list(default) if isinstance(default, list) else default  # a copy: callers may keep it


def _describe(ctx: ToolContext, inp: DescribeInput) -> EnvironmentDescription:
    visible = tuple(sorted(e.name for e in ctx.environments()))
    return _MEMO.get(ctx.store, ("describe", inp.env, visible, ctx.expose_gold),
                     lambda: describe_visible_environment(ctx, inp))


def _evaluate(ctx: ToolContext, inp: EvaluateToolInput) -> EvaluationSummary:
    in_run = ctx.run is not None
    return evaluate_controller(ctx, EvaluateInput(
        source=inp.source, envs=inp.envs, betas=scoped(ctx, inp.betas, "betas"),
        seeds=scoped(ctx, inp.seeds, "seeds"), trace_seeds=scoped(ctx, inp.trace_seeds, "trace_seeds"),
        label=inp.label or ("agent" if in_run else "tool"),
        split="search", run_id=ctx.run.run_id if in_run else None))


def _baseline(ctx: ToolContext, inp: BaselineToolInput) -> BaselineResult:
    for i, config in enumerate(inp.configs or []):
        missing = [k for k in BASELINE_KEYS[inp.method] if k not in config]
        if missing:
            raise ValueError(f"configs[{i}]: {inp.method} needs {', '.join(missing)} (got {sorted(config)})")
    summary, rows = run_baseline(ctx, BaselineInput(method=inp.method, envs=inp.envs, configs=inp.configs,
                                                    seeds=scoped(ctx, inp.seeds, "seeds"),
                                                    trace_seeds=inp.trace_seeds))
    return BaselineResult(summary=summary, rows=rows)


# --------------------------------------------------------------------------------------------------------
# The registry.


@dataclass(frozen=True)
class ToolSpec:
    """One tool: name, description for an agent, pydantic input and output, the function, its cost class."""

    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    fn: Callable[[ToolContext, Any], BaseModel]
    sandbox: bool = False  # runs controller code: the server's limited sandbox slots
    read_only: bool = True

    def call(self, ctx: ToolContext, args: dict[str, Any]) -> BaseModel:
        """Validate ``args`` against the input model and run the tool (pydantic ValidationError on bad
        arguments; the tool's own errors pass through)."""
        return self.fn(ctx, self.input_model(**args))

    @property
    def summary(self) -> str:
        """The first sentence of the description (for a tool list in a prompt)."""
        first = _SENTENCE_END.split(self.description, maxsplit=1)[0].split("\n", 1)[0].rstrip(".")
        return first + "."


TOOL_SPECS: list[ToolSpec] = [
    ToolSpec(
        "list_environments",
        "List the replay environments you can evaluate controllers on. An environment is one reasoning model "
        "on one benchmark (name 'Model/dataset', e.g. 'Qwen3-4B/aime24') whose sampled reasoning branches "
        "were recorded; each entry gives the number of questions, branches per question, probe interval in "
        "tokens, mean branch length and the accuracy of a single branch.",
        NoInput, EnvironmentList, lambda ctx, inp: list_visible_environments(ctx)),
    ToolSpec(
        "describe_environment",
        "Describe one environment in detail: its summary plus per-question statistics (branches, mean tokens, "
        "mean probes, single-branch accuracy, share of 'ERR' probes, the most common final answer and whether "
        "it is correct). Gold answers are not given (answers are opaque labels; a controller never sees them "
        "either). Use it to see which questions are easy or hard before designing a controller.",
        DescribeInput, EnvironmentDescription, _describe),
    ToolSpec(
        "controller_contract",
        "The rules and the API for writing a controller: what a controller is, the replay primitives "
        "(probe_new, probe_more, full read) and their token costs, the voting helpers, the single knob beta "
        "and its monotone schedule, tracing, scoring, and a complete example. Read this first; it is enough "
        "to write a valid controller. Also available as the resource autotts://contract.",
        NoInput, ContractDoc, lambda ctx, inp: controller_contract()),
    ToolSpec(
        "validate_controller",
        "Check a controller source without a full evaluation: static rules (imports, forbidden calls, hidden "
        "attributes), the schedule over beta = 0, 0.1, ..., 1 (numeric, deterministic, monotone) and a smoke "
        "solve of a few questions with tracing on, in the sandbox. Returns ok, errors and warnings, and the "
        "schedule table. Cheap: run it before evaluate_controller.",
        ValidateInput, ValidationReport, validate_controller, sandbox=True),
    ToolSpec(
        "evaluate_controller",
        "Score a controller source on environments for each beta over shuffle seeds, in an isolated "
        "sandbox (no network, no file access). Returns, per (environment, beta), accuracy in percent, mean "
        "tokens per question and the std of accuracy over seeds, plus an evaluation_id for get_evaluation "
        "and get_traces. Results are cached: the same source, data and protocol are not run again. Failures "
        "(syntax, contract, runtime error, timeout) come back as ok=false with a typed error. Cost grows "
        "with len(envs) x len(betas) x seeds; use few seeds (5-20) while iterating, 100 for final numbers "
        "(inside a discovery run, betas and seeds left out default to the run's quick protocol).",
        EvaluateToolInput, EvaluationSummary, _evaluate, sandbox=True, read_only=False),
    ToolSpec(
        "get_evaluation",
        "Show a recorded evaluation: status and error, protocol (seeds, environments, configs), and per "
        "(environment, beta) accuracy, mean tokens, std and the controller's hyper-parameters; with "
        "per_question=true also each question's accuracy over seeds and mean tokens.",
        GetEvaluationInput, EvaluationDetail, get_evaluation),
    ToolSpec(
        "get_traces",
        "Read what a controller did, step by step, on individual questions of an evaluation (traces are "
        "kept for the first trace_seeds seeds). Filter by environment, beta, question and failures only; "
        f"results are paginated (limit at most {MAX_PAGE}; follow next_offset) and capped in size (a very long "
        "trace keeps its head and its tail, the finish step always included). Each trace has the answer, "
        "correctness, token cost and the steps (event, goal, input, output, state, decision).",
        GetTracesInput, TracePage, get_traces),
    ToolSpec(
        "run_baseline",
        "Evaluate a baseline over its budget sweep on environments, to get the accuracy-vs-tokens curve a new "
        "controller should beat: the AutoTTS paper's (sc = self-consistency, asc = adaptive consistency, esc = "
        "early-stopping self-consistency, parallel_probe, cmc = confidence momentum controller) and the field's "
        "other answer-only controllers (bayes and bayes_fit = optimal Bayesian stopping with a parameter-free or "
        "a fitted prior, dynasor = Dynasor-CoT, certaindex = Certaindex-SC, es_cot = ES-CoT, short1/short3 = "
        "short-m@k, deepconf = DeepConf's vote-share stop). Cached like evaluate_controller.",
        BaselineToolInput, BaselineResult, _baseline, sandbox=True, read_only=False),
    ToolSpec(
        "query_store",
        "Run one read-only DuckDB SQL query (SELECT or EXPLAIN) over the history and the replay data, e.g. "
        "to compare evaluations or inspect branches. No file, network or extension access; rows and size are "
        "capped and slow queries are stopped. Data may lag writes by about a second (it reads a snapshot).\n"
        + SCHEMA_HELP,
        QueryInput, QueryResult, query_store),
]
TOOLS_BY_NAME: dict[str, ToolSpec] = {t.name: t for t in TOOL_SPECS}
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS_BY_NAME)


def select(names: Iterable[str] | None = None) -> list[ToolSpec]:
    """The specs named (default: all, in registry order); ValueError naming any unknown one."""
    wanted = list(names) if names is not None else list(TOOL_NAMES)
    unknown = [n for n in wanted if n not in TOOLS_BY_NAME]
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOL_NAMES)}")
    return [TOOLS_BY_NAME[n] for n in wanted]


def tool_list_markdown(specs: Iterable[ToolSpec]) -> str:
    """A markdown list of tools (name and first sentence), for a prompt that names the tools an agent has."""
    return "\n".join(f"- `{s.name}`: {s.summary}" for s in specs)
