"""The configuration of a discovery run: ``RunConfig`` and ``RoleSettings``, and everything derived from them.

This module is the one source of

* the settings themselves (pydantic fields with their defaults, bounds and descriptions),
* the command-line flags of ``autotts-graph run`` (a field has a flag when its annotation carries a ``Flag``;
  the flag's help is the field's description, its bounds the field's bounds),
* the rules for what a ``--resume`` may change (``Flag(resumable=True)``; the rest define what the run
  measures),
* how a ``run.toml`` and the given flags combine into a ``RunConfig`` (flags win over the file, a role's own
  flag over the flag for every role).

``cli/run_cmd.py`` renders ``cli_flags()`` as typer options and hands the values back to ``config_from_flags``
and ``resume_update``; it holds no list of settings of its own. Nothing here imports LangChain or LangGraph
(``autotts-graph --help`` builds its options from this module).
"""

from __future__ import annotations

import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from autotts_graph.sandbox.runtime.validate import BETA_GRID
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

ROLES = ("proposer", "critic", "diagnostician")
RoleKind = str  # "offline", "llm", "auto", or "module:Class" (any importable class implementing the role protocol)
DEFAULT_BETAS = BETA_GRID  # the contract's grid (one copy, in the sandbox runtime, which cannot import graph/)


@dataclass(frozen=True)
class Flag:
    """How a field appears on ``autotts-graph run``'s command line.

    ``names``: the option names (default ``--field-name``). ``resumable``: a ``--resume`` may change it.
    ``parse``: how the flag's text becomes the value (``csv``: a comma-separated list; ``floats``: a
    comma-separated list of numbers; ``duration``: ``90s``, ``30m``, ``2h`` or minutes). ``envvar``: an
    environment variable read when the flag is absent. Role fields only: ``shared`` is the name of the flag
    that sets it for every role (None: no such flag), ``per_role`` the roles that get ``--<role>-<stem>``
    (``stem`` default: the field name; an empty stem gives ``--<role>``)."""

    names: tuple[str, ...] = ()
    resumable: bool = False
    parse: str | None = None
    envvar: str | None = None
    shared: str | None = None
    per_role: tuple[str, ...] = ()
    stem: str | None = None


def flag(*names: str, **kw: Any) -> Flag:
    """A ``Flag`` with the given option names."""
    return Flag(names=tuple(names), **kw)


def _all_baselines() -> list[str]:
    """Every baseline of ``tools/baselines.py``: the discovery fitness frontier is the same list (imported when a
    configuration is made, not when the CLI builds its options)."""
    from autotts_graph.tools.baselines import SWEEPS

    return list(SWEEPS)


ProposerTools = Literal["auto", "on", "off"]
Strategy = Literal["evolve", "random", "greedy"]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


class RoleSettings(BaseModel):
    """How one agent role is played: offline heuristics, an LLM, or a class named by import path."""

    kind: Annotated[RoleKind, Flag(per_role=ROLES, stem="", resumable=True)] = Field(
        "offline", description="offline, llm or module:Class (default: llm when the API key is set, else "
                               "offline).")
    model: Annotated[str, Flag(shared="--model", per_role=ROLES, resumable=True)] = Field(
        "gpt-4o-mini", description="Model name as the endpoint knows it.")
    models: Annotated[list[str], Flag(per_role=("proposer",), parse="csv", resumable=True)] = Field(
        default_factory=list, description="More models for the proposer, comma-separated: an ensemble in which a "
                                          "bandit picks each proposal's model by its fitness gains.")
    base_url: Annotated[str | None, Flag(shared="--base-url", per_role=ROLES, resumable=True)] = Field(
        None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (default: OpenAI's).")
    api_key_env: Annotated[str, Flag(shared="--api-key-env", per_role=ROLES, resumable=True)] = Field(
        "OPENAI_API_KEY", description="Variable holding the API key (a local server takes any value).")
    temperature: float = Field(0.2, ge=0, le=2)
    tools: Annotated[ProposerTools, Flag(per_role=("proposer",), resumable=True)] = Field(
        "auto", description="Proposer's tool calls: on, off (facts in the prompt, code in a fenced block), or "
                            "auto (on where the endpoint's probe found working tool calls).")
    context_tokens: Annotated[int | None, Flag(shared="--context-tokens", resumable=True)] = Field(
        None, ge=256, description="The model's context window in tokens (default: what the server reports or "
                                  "its first overflow error says); prompts are shrunk to fit.")
    max_output_tokens: Annotated[int, Flag(shared="--max-output-tokens", resumable=True)] = Field(
        4096, ge=16, description="Output tokens of one LLM call; the client cuts a longer answer off.")
    timeout_s: Annotated[float, Flag(shared="--call-timeout", resumable=True)] = Field(
        300.0, gt=0, description="Wall-clock seconds of one LLM call; the client cuts a slower one off.")
    usd_per_mtok_in: Annotated[float, Flag(shared="--usd-per-mtok-in", resumable=True)] = Field(
        0.0, ge=0, description="Price per million input tokens (for --max-usd).")
    usd_per_mtok_out: Annotated[float, Flag(shared="--usd-per-mtok-out", resumable=True)] = Field(
        0.0, ge=0, description="Price per million output tokens (for --max-usd).")
    max_tool_steps: int = Field(12, ge=1, le=100, description="Proposer: tool calls before it must submit.")

    def resolved_kind(self) -> str:
        """``auto`` means ``llm`` when the role's API-key variable is set, else ``offline``."""
        if self.kind == "auto":
            return "llm" if os.environ.get(self.api_key_env) else "offline"
        return self.kind


class RunConfig(BaseModel):
    """Everything a run was started with; stored with the run and in every checkpoint."""

    run_id: str = ""
    search_envs: Annotated[list[str], flag("--search")] = Field(
        default_factory=list, description="Search environment (repeat).")
    heldout_envs: Annotated[list[str], flag("--heldout")] = Field(
        default_factory=list, description="Held-out environment (repeat).")
    betas: Annotated[list[float], Flag(parse="floats")] = Field(
        default_factory=lambda: list(DEFAULT_BETAS), description="Comma-separated β grid (default 0,0.1,…,1).")
    seeds: Annotated[int, Flag()] = Field(20, ge=1, le=1000, description="Shuffle seeds per evaluation.")
    trace_seeds: int = Field(1, ge=0, le=10)
    quick_seeds: int = Field(4, ge=1, le=100, description="Seeds of the proposer's quick evaluation tool.")
    rounds: Annotated[int, flag("--rounds", "--generations", resumable=True)] = Field(
        3, ge=1, le=100_000, description="Generations (a generation is `population` candidates).")
    population: Annotated[int, Flag(resumable=True)] = Field(
        8, ge=1, le=256, description="Candidates proposed per generation, evaluated in parallel (default 8; 4 on "
                                     "the embedded default environments).")
    max_attempts: Annotated[int, Flag(resumable=True)] = Field(
        3, ge=1, le=50, description="Proposals per candidate slot (first try plus retries).")
    max_evaluations: Annotated[int | None, Flag(resumable=True)] = Field(
        None, ge=1, description="Stop after this many candidates were screened.")
    max_usd: Annotated[float | None, Flag(resumable=True)] = Field(
        None, ge=0, description="LLM spend limit in $ (at the roles' prices): no new LLM call once reached; every "
                                "candidate already paid for is still checked, evaluated and reported.")
    max_llm_tokens: Annotated[int | None, flag("--max-tokens", resumable=True)] = Field(
        None, ge=0, description="LLM token limit (input plus output, as the servers report them); as --max-usd.")
    max_wall_s: Annotated[float | None, flag("--wall", "--max-minutes", parse="duration", resumable=True)] = Field(
        None, gt=0, description="Wall-clock budget of the run: 90s, 30m, 2h or minutes (the baselines plus every "
                                "generation).")
    # frontier: the fitness (mean accuracy margin over every baseline configuration at equal cost, CMC at
    # every β included); best_accuracy: the best mean accuracy over β, whatever it costs.
    selection: Annotated[Literal["frontier", "best_accuracy"], Flag()] = Field(
        "frontier", description="frontier (the accuracy margin over every baseline at equal cost) or "
                                "best_accuracy.")
    # Noise-robust selection (graph/nodes/select.py): the top candidates are re-evaluated on fresh seeds first.
    finalists: Annotated[int, Flag()] = Field(
        3, ge=1, le=32, description="Top candidates re-evaluated on fresh seeds (strictly audited) before the "
                                    "selection, which takes the best lower confidence bound of fitness.")
    baselines: Annotated[list[str], Flag(parse="csv")] = Field(
        default_factory=_all_baselines, description="Comma-separated baselines to compare with (default: all).")
    review: Annotated[bool, Flag(resumable=True)] = Field(
        False, description="Pause before each evaluation for a human to approve, edit or reject.")
    sandbox: Annotated[str, Flag()] = Field("auto", description="auto, docker, bwrap or process.")
    # Where sandbox tasks run (tools/executors.py); figures are identical either way, so a resume may change both.
    executor: Annotated[Literal["local", "ray"], Flag(resumable=True)] = Field(
        "local", description="Where sandbox tasks run: local (this machine) or ray (a Ray cluster; pip install "
                             "-e '.\\[ray]').")
    ray_address: Annotated[str | None, Flag(resumable=True, envvar="RAY_ADDRESS")] = Field(
        None, description="Ray cluster host:port (env RAY_ADDRESS); none: Ray starts a local cluster.")
    workers: Annotated[int | None, Flag(resumable=True)] = Field(
        None, ge=1, description="Parallel sandbox tasks (on Ray: default the cluster's cores).")
    sandbox_slots: Annotated[int | None, Flag(resumable=True)] = Field(
        None, ge=1, le=64, description="Candidates in the sandbox at once (default: one per worker).")
    llm_slots: Annotated[int, Flag(resumable=True)] = Field(4, ge=1, le=64, description="Agent calls in flight at "
                                                                                          "once.")
    eval_timeout_s: float | None = Field(None, gt=0, description="A fixed limit of one sandbox task (default: "
                                                                  "it scales with the task's work).")
    solve_timeout_s: Annotated[float, flag("--timeout")] = Field(
        10.0, gt=0, description="Seconds one solve() may run before it is stopped and reported with its question "
                                "and seed.")
    seed: Annotated[int, Flag()] = Field(0, description="Discovery seed: the offline proposer's draws, the archive's "
                                                        "parents and the finalists' fresh seeds.")
    # The search strategy and its ablations (issue 23): at equal budget (the same --rounds, --population and
    # --max-evaluations count screened candidates) they differ only in what the proposer is shown. None is
    # resumable: each defines what the run measures.
    strategy: Annotated[Strategy, Flag()] = Field(
        "evolve", description="evolve (parents and inspirations from the program archive, diagnoses fed back), "
                              "random (independent proposals: no parents, history or feedback; the same proposer "
                              "and grammar) or greedy (one candidate a generation, refined from the best so far).")
    use_diagnosis: Annotated[bool, flag("--no-diagnosis")] = Field(
        True, description="Ablation: the proposer sees scores only, no diagnoses and no traces (the statistics "
                          "diagnostician still explains each candidate in the ledger, with no LLM call).")
    use_critic: Annotated[bool, flag("--no-critic")] = Field(
        True, description="Ablation: no critic; every candidate that passes the checks goes on, recorded as "
                          "'no critic'.")
    # The program archive (graph/archive.py).
    islands: Annotated[int, Flag()] = Field(3, ge=1, le=16, description="Islands of the program archive (at most "
                                                                        "one per slot).")
    migrate_every: int = Field(3, ge=1, description="Generations between migrations of each island's best.")
    explore_rate: float = Field(0.2, ge=0, le=1, description="Share of parents drawn uniformly, not by rank.")
    inspirations: int = Field(4, ge=0, le=16, description="Archive members shown with each proposal.")
    # Cascade evaluation: a cheap screen, then the full β grid x seeds for candidates near their niche's best.
    cascade: Annotated[bool, Flag()] = Field(True, description="Screen cheaply first; fully evaluate near-best "
                                                               "candidates only.")
    screen_seeds: Annotated[int, Flag()] = Field(10, ge=1, le=1000, description="Seeds of the screen.")
    screen_betas: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0])
    # 0.1: on the real AIME24 search set every new best screened at or above its gate reference, and 0.1 halves
    # the full evaluations of 0.5 (most children of the best screen within half a point of it).
    screen_margin: Annotated[float, Flag()] = Field(
        0.1, ge=0, description="Fitness points a screen may trail its niche's best by (and three times that the "
                               "run's best) and still be fully evaluated.")
    proposer: RoleSettings = Field(default_factory=RoleSettings)
    critic: RoleSettings = Field(default_factory=RoleSettings)
    diagnostician: RoleSettings = Field(default_factory=RoleSettings)

    def lanes_per_generation(self) -> int:
        """Candidates proposed per generation: ``population``, but one under ``greedy`` (the AutoTTS loop refines
        one candidate at a time, so its budget is ``rounds`` screened)."""
        return 1 if self.strategy == "greedy" else self.population

    def ablations(self) -> list[str]:
        """The ablation flags this run was started with (for the report), in a fixed order."""
        return [name for name, on in (("no-diagnosis", not self.use_diagnosis), ("no-critic", not self.use_critic),
                                      ("no-cascade", not self.cascade)) if on]

    def fresh_first_seed(self) -> int:
        """The first of the finalists' fresh shuffle seeds: past the search seeds, and the same for the same
        run seed (seed s uses seeds (s+1)·n .. (s+2)·n - 1 for n seeds per evaluation)."""
        return self.seeds * (1 + abs(self.seed))

    def screen_protocol(self) -> tuple[list[float], int]:
        """The screen's β points (the grid's nearest to ``screen_betas``) and seeds."""
        picked = sorted({min(self.betas, key=lambda b, t=t: (abs(b - t), b)) for t in self.screen_betas})
        return picked, min(self.screen_seeds, self.seeds)

    def screen_is_full(self) -> bool:
        """Whether the screen already is the full evaluation (no cascade, or a grid no larger than it)."""
        betas, seeds = self.screen_protocol()
        return not self.cascade or (betas == self.betas and seeds == self.seeds)

    @field_validator("betas", "screen_betas")
    @classmethod
    def _betas_in_range(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("give at least one beta")
        if any(not 0.0 <= b <= 1.0 for b in v):
            raise ValueError("every beta must lie in [0, 1]")
        return sorted({float(b) for b in v})


# --------------------------------------------------------------------------- the command line


@dataclass(frozen=True)
class CliFlag:
    """One option of ``autotts-graph run``, derived from a field: what the CLI renders and hands back.

    ``param`` is the Python name of the option's value; ``role`` is None for a run setting, a role's name for
    that role's own flag, and ``"*"`` for the flag that sets a role field for every role."""

    param: str
    names: tuple[str, ...]
    field: str
    role: str | None
    kind: type  # bool, int, float or str (the text before ``parse``)
    help: str
    multiple: bool = False  # a repeated option (a list of strings)
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    envvar: str | None = None
    parse: str | None = None
    resumable: bool = False


def _marker(info: FieldInfo) -> Flag | None:
    return next((m for m in info.metadata if isinstance(m, Flag)), None)


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        lo = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else lo
        hi = getattr(m, "le", None) if getattr(m, "le", None) is not None else hi
    return lo, hi


def _scalar(annotation: Any) -> tuple[type, bool, tuple[str, ...]]:
    """(the flag's text type, whether it repeats, its choices) of a field annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _scalar(args[0])
    if origin is Literal:
        return str, False, tuple(str(a) for a in typing.get_args(annotation))
    if origin is list:
        return str, True, ()
    return (annotation if annotation in (bool, int, float) else str), False, ()


def _help(info: FieldInfo, choices: tuple[str, ...]) -> str:
    text = info.description or ""
    default = info.get_default(call_default_factory=False)
    if not info.is_required() and info.default_factory is None and default not in (None, "", False, True) \
            and "default" not in text:
        text = f"{text.rstrip('.')} (default {default})." if text else f"Default {default}."
    return text


def _flag_of(name: str, info: FieldInfo, marker: Flag, role: str | None, names: tuple[str, ...]) -> CliFlag:
    kind, multiple, choices = _scalar(info.annotation)
    if marker.parse in ("csv", "floats", "duration"):
        kind, multiple = str, False
    lo, hi = _bounds(info)
    param = name if role is None else ("all_roles" if role == "*" else role) + "__" + name
    text = _help(info, choices)
    if role == "*" and len(marker.per_role) > 1:
        text = f"Every role: {text}"
    elif role in ROLES and len(marker.per_role) > 1:
        text = f"The {role} only: {text}"
    return CliFlag(param=param, names=names, field=name, role=role, kind=kind, help=text,
                   multiple=multiple, choices=choices, minimum=lo, maximum=hi, envvar=marker.envvar,
                   parse=marker.parse, resumable=marker.resumable)


def cli_flags() -> list[CliFlag]:
    """Every option of ``autotts-graph run`` that sets a configuration field, in the fields' order: the run's
    settings, then the role settings (the flag for every role before each role's own)."""
    out = []
    for name, info in RunConfig.model_fields.items():
        marker = _marker(info)
        if marker is not None:
            out.append(_flag_of(name, info, marker, None, marker.names or ("--" + name.replace("_", "-"),)))
    for name, info in RoleSettings.model_fields.items():
        marker = _marker(info)
        if marker is None:
            continue
        if marker.shared:
            out.append(_flag_of(name, info, marker, "*", (marker.shared,)))
        stem = name.replace("_", "-") if marker.stem is None else marker.stem
        for role in marker.per_role:
            out.append(_flag_of(name, info, marker, role, (f"--{role}-{stem}" if stem else f"--{role}",)))
    return out


def parse_duration(text: str) -> float:
    """Seconds of ``90s``, ``30m``, ``1.5h`` or a plain number of minutes; ValueError otherwise."""
    t = text.strip().lower()
    scale = {"s": 1.0, "m": 60.0, "h": 3600.0}.get(t[-1:], None)
    number = t[:-1] if scale is not None else t
    try:
        value = float(number) * (scale if scale is not None else 60.0)
    except ValueError:
        raise ValueError(f"--wall {text!r}: give e.g. 90s, 30m, 2h or a number of minutes") from None
    if value <= 0:
        raise ValueError("--wall must be positive")
    return value


def _parsed(f: CliFlag, value: Any) -> Any:
    if value is None:
        return None
    if f.parse == "csv":
        return [x.strip() for x in str(value).split(",") if x.strip()]
    if f.parse == "floats":
        items = [x.strip() for x in str(value).split(",") if x.strip()]
        try:
            return [float(x) for x in items]
        except ValueError:
            raise ValueError(f"{f.names[0]} {value!r}: give comma-separated numbers") from None
    if f.parse == "duration":
        return parse_duration(str(value))
    if f.multiple:
        return list(value) or None
    return value


@dataclass
class GivenFlags:
    """The configuration flags a command line gave (absent ones left out), split the way they apply."""

    run: dict[str, Any]
    roles: dict[str, dict[str, Any]]  # role -> field -> value, the role's own flag over the one for every role
    names: dict[str, str]  # field or "role.field" -> the flag that gave it (for messages)


def given_flags(values: dict[str, Any]) -> GivenFlags:
    """Sort the values typer passed (``param -> value``, None when absent) into run and role settings."""
    run: dict[str, Any] = {}
    roles: dict[str, dict[str, Any]] = {r: {} for r in ROLES}
    names: dict[str, str] = {}
    flags = cli_flags()
    for f in flags:  # the flags for every role first: a role's own flag then overrides them
        value = _parsed(f, values.get(f.param))
        if value is None:
            continue
        if f.role is None:
            run[f.field] = value
            names[f.field] = f.names[0]
        elif f.role == "*":
            for role in ROLES:
                roles[role][f.field] = value
                names[f"{role}.{f.field}"] = f.names[0]
    for f in flags:
        value = _parsed(f, values.get(f.param))
        if value is not None and f.role in ROLES:
            roles[f.role][f.field] = value
            names[f"{f.role}.{f.field}"] = f.names[0]
    return GivenFlags(run=run, roles={r: v for r, v in roles.items() if v}, names=names)


def load_run_file(path: Path) -> dict[str, Any]:
    """A ``run.toml``: RunConfig keys at the top level, role tables ``[proposer]`` etc., plus ``store``.

    Top-level ``model``/``base_url``/``api_key_env`` apply to every role that does not set its own.
    """
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"--config {path}: {exc}") from None
    shared = {k: data.pop(k) for k in ("model", "base_url", "api_key_env") if k in data}
    for role in ROLES:
        table = data.get(role)
        if isinstance(table, str):
            table = {"kind": table}
        table = dict(table or {})
        for k, v in shared.items():
            table.setdefault(k, v)
        if table:
            data[role] = table
    return data


def _validated(cls: type[BaseModel], data: dict[str, Any], names: dict[str, str], prefix: str = "") -> Any:
    """``cls.model_validate(data)`` with a bad value reported under the flag that gave it (one line)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        where = names.get(prefix + loc) or names.get(prefix + str(first["loc"][0])) or (prefix + loc)
        msg = first["msg"].removeprefix("Value error, ")
        raise ValueError(f"{where}: {msg}") from None


def role_settings(table: dict[str, Any], names: dict[str, str] | None = None, role: str = "") -> RoleSettings:
    """A role's settings from its table (kind ``auto`` unless given), with ``auto`` resolved."""
    settings = _validated(RoleSettings, {"kind": "auto", **table}, names or {}, f"{role}." if role else "")
    return settings.model_copy(update={"kind": settings.resolved_kind()})


def config_from_flags(file_data: dict[str, Any], given: GivenFlags) -> RunConfig:
    """RunConfig from the run file, overridden by the flags that were given; role kinds resolved (auto)."""
    data = {k: v for k, v in file_data.items() if k != "store"}
    data.update(given.run)
    for role in ROLES:
        data[role] = role_settings({**dict(data.get(role) or {}), **given.roles.get(role, {})}, given.names, role)
    return _validated(RunConfig, data, given.names)


def resume_update(stored: dict[str, Any], given: GivenFlags) -> dict[str, Any]:
    """The changes a ``--resume`` makes to the stored configuration ``stored``: the given flags, each of which
    must be resumable (ValueError naming the first that is not: it defines what the run measures)."""
    resumable = {f.field for f in cli_flags() if f.role is None and f.resumable}
    role_resumable = {f.field for f in cli_flags() if f.role is not None and f.resumable}
    for key in given.run:
        if key not in resumable:
            raise ValueError(f"{given.names[key]} cannot change on --resume: it defines what the run measures "
                             "(start a new run instead)")
    update: dict[str, Any] = dict(given.run)
    for role, fields in given.roles.items():
        for key in fields:
            if key not in role_resumable:
                raise ValueError(f"{given.names[f'{role}.{key}']} cannot change on --resume")
        update[role] = role_settings({**dict(stored.get(role) or {}), **fields}, given.names, role)
    if update:
        _validated(RunConfig, {**stored, **update}, given.names)  # a bad value fails before anything changes
    return update


def resumable_fields() -> tuple[str, ...]:
    """The run settings a ``--resume`` may change (role settings given by flag may always change)."""
    return tuple(f.field for f in cli_flags() if f.role is None and f.resumable)
