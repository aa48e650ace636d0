"""Seeded synthetic replay environments (``store synth``) that imitate the shipped AutoTTS replay data.

The generative model, per question:

* **Difficulty.** The single-branch accuracy is ``sigmoid(z)``, ``z ~ Normal(ability, difficulty_spread)``.
  A wide spread gives the bimodal picture of the real data: many questions almost never or almost always
  solved, a few in between.
* **Answers.** The gold answer and ``n_distractors`` wrong answers are AIME-style integers 0..999. A wrong
  branch ends on a distractor with probability ``distractor_strength`` (weights drawn from
  Dirichlet(``distractor_concentration``), so one distractor usually dominates and can out-vote the gold
  answer on hard questions), otherwise on a scattered one-off answer. A small ``final_err_rate`` of finals
  are ``'ERR'``.
* **Length.** ``log(tokens) = question mean + branch noise``; harder questions are longer, and within a
  question wrong branches are ``wrong_token_ratio`` (one-off answers) or ``distractor_token_ratio`` times
  longer than correct ones, with per-question jitter ``token_ratio_sigma``. Branches past ``token_cap`` are
  truncated there (plus a few hundred tokens, as generation caps do in the real data).
* **Probes.** ``len(probe_answers) = ceil(tokens / probe_freq) - shortfall`` with the shortfall (0..9) drawn
  from the distribution observed in the real files. Each branch settles on its final answer after a
  fraction ``u ~ Beta`` (mean ``settle_mean``) of its probes; before that its probes wander (an early guess
  shared by the question's branches, a sample of the question's final answers, or a fresh number) and repeat
  the previous probe with probability ``persistence``; after it they equal the final answer except for rare
  ``flicker``. ``'ERR'`` replaces probes at a per-question rate with mean ``err_rate``, highest early and
  falling to zero at the end. The last probe always equals the final answer.

Everything is drawn from ``numpy.random.default_rng(seed)``, so the same parameters give identical records.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .db import Store
from .trajectories import import_records, list_environments

ERR = "ERR"
MAX_ANSWER = 1000  # AIME answers are integers 0..999

# P(ceil(tokens / probe_freq) - len(probe_answers) = d) for d = 0..9, pooled over the eight real files.
_SHORTFALL_PROBS = np.array([5218, 14116, 6587, 2997, 1194, 421, 165, 88, 65, 10], dtype=float)
_SHORTFALL_PROBS /= _SHORTFALL_PROBS.sum()

# Datasets whose environments are used for search when a store's environments are split automatically
# (AutoTTS searches on AIME24 and holds out AIME25/HMMT25; docs/replay-and-contract.md §8).
SEARCH_DATASETS = frozenset({"search", "aime24"})


class SynthParams(BaseModel):
    """Parameters of one synthetic environment; defaults give a mid-strength model (about Qwen3-1.7B)."""

    model_config = ConfigDict(extra="forbid")

    n_questions: int = Field(30, ge=1, le=10_000, description="questions in the environment")
    n_branches: int = Field(128, ge=1, le=4096, description="pre-sampled branches per question")
    probe_freq: int = Field(500, ge=1, le=100_000, description="probe interval in tokens (Δ)")
    ability: float = Field(-0.4, ge=-20, le=20,
                           description="model strength: mean logit of a question's single-branch accuracy")
    difficulty_spread: float = Field(3.0, ge=0, le=20,
                                     description="std of the per-question accuracy logit (large = bimodal)")
    n_distractors: int = Field(3, ge=0, le=50, description="strong wrong answers per question")
    distractor_strength: float = Field(0.6, ge=0, le=1,
                                       description="share of wrong branches that end on a distractor "
                                                   "(the rest end on scattered one-off answers)")
    distractor_concentration: float = Field(0.7, gt=0, le=100,
                                            description="Dirichlet alpha of distractor weights "
                                                        "(small = one dominant distractor)")
    settle_mean: float = Field(0.72, gt=0, lt=1,
                               description="mean fraction of a branch's probes before it settles "
                                           "on its final")
    settle_concentration: float = Field(3.0, gt=0, le=1000,
                                        description="Beta concentration of the settle point")
    persistence: float = Field(0.55, ge=0, le=1,
                               description="probability an unsettled probe repeats the previous one")
    early_guess_weight: float = Field(0.45, ge=0, le=1,
                                      description="share of unsettled probe draws that are the question's "
                                                  "early guess")
    fresh_weight: float = Field(0.4, ge=0, le=1,
                                description="share of unsettled probe draws that are fresh random numbers "
                                            "(the rest sample the question's final answers)")
    flicker: float = Field(0.1, ge=0, le=1, description="probability a settled probe deviates from the final")
    err_rate: float = Field(0.06, ge=0, lt=1, description="mean fraction of probes that are 'ERR'")
    final_err_rate: float = Field(0.005, ge=0, lt=1, description="fraction of final answers that are 'ERR'")
    median_tokens: float = Field(11000, gt=0, le=1e6,
                                 description="median length of a correct branch on an average question")
    question_token_sigma: float = Field(0.3, ge=0, le=5, description="std of per-question mean log length")
    branch_token_sigma: float = Field(0.3, ge=0, le=5, description="std of log length within a question")
    difficulty_token_coef: float = Field(0.15, ge=0, le=5,
                                         description="increase of log length per unit of difficulty logit")
    wrong_token_ratio: float = Field(1.3, ge=0.1, le=20,
                                     description="median length of one-off wrong branches relative to "
                                                 "correct ones on the same question")
    distractor_token_ratio: float = Field(1.1, ge=0.1, le=20,
                                          description="median length of distractor branches relative to "
                                                      "correct ones on the same question")
    token_ratio_sigma: float = Field(0.3, ge=0, le=5,
                                     description="per-question std of the log length ratios (on some "
                                                 "questions wrong branches are the shorter ones)")
    token_cap: int = Field(41_000, ge=1, description="generation cap: longer branches are truncated here")
    min_tokens: int = Field(1000, ge=1, description="shortest branch")
    seed: int = Field(0, ge=0, description="seed of numpy.random.default_rng")

    @model_validator(mode="after")
    def _check(self) -> SynthParams:
        if self.early_guess_weight + self.fresh_weight > 1:
            raise ValueError("early_guess_weight + fresh_weight must be at most 1")
        if self.min_tokens > self.token_cap:
            raise ValueError("min_tokens must not exceed token_cap")
        return self


# Presets tuned so SC@64 accuracy, mean tokens, ERR rate and answer diversity sit in the range of the real
# Qwen3 AIME24/AIME25 environments of the same size (see benchmarks/synth_vs_real.py).
PRESETS: dict[str, SynthParams] = {
    "synth-0.6b": SynthParams(ability=-3.4, difficulty_spread=2.6, n_distractors=4, distractor_strength=0.55,
                              distractor_concentration=0.8, err_rate=0.045, median_tokens=11000,
                              settle_mean=0.75),
    "synth-1.7b": SynthParams(ability=-0.6, difficulty_spread=3.0, n_distractors=3, distractor_strength=0.6,
                              distractor_concentration=0.7, err_rate=0.04, median_tokens=11500,
                              settle_mean=0.73),
    "synth-4b": SynthParams(ability=2.4, difficulty_spread=4.2, n_distractors=3, distractor_strength=0.75,
                            distractor_concentration=0.6, err_rate=0.12, median_tokens=11000,
                            settle_mean=0.7),
    "synth-8b": SynthParams(ability=2.5, difficulty_spread=4.2, n_distractors=3, distractor_strength=0.8,
                            distractor_concentration=0.6, err_rate=0.06, median_tokens=11500,
                            settle_mean=0.7),
}

# The environments `ensure_default_environments` creates in an empty store: (model preset, dataset, seed).
DEFAULT_ENVIRONMENTS: tuple[tuple[str, str, int], ...] = (
    ("synth-1.7b", "search", 1), ("synth-8b", "search", 2),
    ("synth-1.7b", "heldout", 101), ("synth-8b", "heldout", 102),
)


def preset(name: str, **overrides: Any) -> SynthParams:
    """A preset's parameters with ``overrides`` applied (validated); ValueError names the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return SynthParams.model_validate({**PRESETS[name].model_dump(), **overrides})


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _synth_question(rng: np.random.Generator, p: SynthParams, index: int) -> dict:
    nb = p.n_branches
    z = p.ability + p.difficulty_spread * rng.standard_normal()
    accuracy = float(_sigmoid(np.asarray(z)))

    # Gold, distractors and the early guess are distinct integers so a wrong answer never equals gold.
    n_named = 2 + p.n_distractors
    named = rng.choice(MAX_ANSWER, size=n_named, replace=False).astype(str)
    gold, guess, distractors = named[0], named[1], named[2:]

    correct = rng.random(nb) < accuracy
    wrong_kind = rng.random(nb) < p.distractor_strength
    if p.n_distractors:
        weights = rng.dirichlet(np.full(p.n_distractors, p.distractor_concentration))
        dis_pick = distractors[rng.choice(p.n_distractors, size=nb, p=weights)]
    else:
        wrong_kind[:] = False
        dis_pick = np.full(nb, gold)
    # One-off wrong answers: any integer but gold (shift values that hit gold).
    scattered = rng.integers(0, MAX_ANSWER - 1, size=nb)
    scattered = np.where(scattered >= int(gold), scattered + 1, scattered).astype(str)
    finals = np.where(correct, gold, np.where(wrong_kind, dis_pick, scattered)).astype(object)
    finals[rng.random(nb) < p.final_err_rate] = ERR

    # Lengths: harder questions (low z) are longer; wrong branches longer still; truncation at the cap.
    mu = (np.log(p.median_tokens) - p.difficulty_token_coef * (z - p.ability)
          + p.question_token_sigma * rng.standard_normal())
    # Within a question wrong branches are only modestly longer (confident distractors least); most of the
    # real correct-vs-wrong length gap comes from hard questions being both long and mostly failed.
    ratio = np.where(finals == gold, 1.0, np.where(wrong_kind, p.distractor_token_ratio, p.wrong_token_ratio))
    jitter = np.where(finals == gold, 0.0, p.token_ratio_sigma * rng.standard_normal())
    log_t = mu + np.log(ratio) + jitter + p.branch_token_sigma * rng.standard_normal(nb)
    tokens = np.exp(np.minimum(log_t, 30.0))
    over = tokens > p.token_cap
    tokens = np.where(over, p.token_cap + rng.integers(0, 500, size=nb), tokens)
    tokens = np.maximum(np.round(tokens), p.min_tokens).astype(np.int64)

    n_chunks = -(-tokens // p.probe_freq)
    shortfall = rng.choice(len(_SHORTFALL_PROBS), size=nb, p=_SHORTFALL_PROBS)
    lengths = np.maximum(1, n_chunks - shortfall)
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    starts = ends - lengths
    branch_of = np.repeat(np.arange(nb), lengths)
    k = np.arange(total) - starts[branch_of]
    depth = (k + 0.5) / lengths[branch_of]

    # Unsettled probes: a Markov chain that keeps its previous answer with probability `persistence`;
    # forward-filling the index of the last fresh draw implements it without a Python loop. Each branch's
    # first probe is always a fresh draw, so the fill never leaks across branches.
    kind = rng.random(total)
    sampled_finals = finals[rng.integers(0, nb, size=total)]
    draws = np.where(kind < p.early_guess_weight, guess, sampled_finals).astype(object)
    fresh = (kind >= p.early_guess_weight) & (kind < p.early_guess_weight + p.fresh_weight)
    draws[fresh] = rng.integers(0, MAX_ANSWER, size=int(fresh.sum())).astype(str)
    new_draw = (rng.random(total) >= p.persistence) | (k == 0)
    last_new = np.maximum.accumulate(np.where(new_draw, np.arange(total), 0))
    wander = draws[last_new]

    a = p.settle_mean * p.settle_concentration
    b = (1 - p.settle_mean) * p.settle_concentration
    settle = rng.beta(a, b, size=nb)
    settled = (depth >= settle[branch_of]) & (rng.random(total) >= p.flicker)
    probes = np.where(settled, finals[branch_of], wander)

    # 'ERR' probes: per-question rate, shaped 1.5·(1 - depth²) (mean 1 over the branch) so they are
    # commonest early and vanish at the end, as in the real traces.
    err_q = rng.beta(max(p.err_rate, 1e-9) * 4, (1 - p.err_rate) * 4) if p.err_rate > 0 else 0.0
    probes[rng.random(total) < err_q * 1.5 * (1 - depth ** 2)] = ERR
    probes[ends - 1] = finals  # the last probe is the final answer (observed invariant)

    probe_lists = [probes[s:e].tolist() for s, e in zip(starts, ends, strict=True)]
    final_list = finals.tolist()
    token_list = tokens.tolist()
    return {
        "question": f"synthetic question {index}",
        "gold_answer": str(gold),
        "probe_freq": p.probe_freq,
        "each_branch": [[pl, t, f] for pl, t, f in zip(probe_lists, token_list, final_list, strict=True)],
        "final_answers_trace": final_list,
    }


def synthesize(params: SynthParams) -> list[dict]:
    """AutoTTS question records drawn from ``params``; identical for identical parameters (seed included)."""
    rng = np.random.default_rng(params.seed)
    return [_synth_question(rng, params, qi) for qi in range(params.n_questions)]


def synthesize_into(store: Store, model: str, dataset: str, params: SynthParams,
                    replace: bool = False, split: str = "search") -> tuple[str, bool]:
    """Synthesise an environment and import it as ``model/dataset`` (origin ``synth``).

    Returns (name, created); identical content already stored is a no-op, different content needs ``replace``.
    """
    records = synthesize(params)
    return import_records(store, model, dataset, records, origin="synth", spec=params.model_dump(),
                          source="synth", replace=replace, split=split)


def ensure_default_environments(store: Store) -> dict[str, list[str]]:
    """Make sure the store has environments to search and hold out on; return the split.

    An empty store receives the synthetic defaults (``DEFAULT_ENVIRONMENTS``: synth-1.7b and synth-8b, each
    with a ``search`` and a ``heldout`` dataset of 30 questions × 128 branches). A store that already holds
    environments is left alone and split by dataset: ``search``/``aime24`` are searched on, the rest held out.
    Returns ``{"search": [...], "heldout": [...], "created": [...]}``.
    """
    created: list[str] = []
    if not list_environments(store):
        for model, dataset, seed in DEFAULT_ENVIRONMENTS:
            # Held out from the start: every surface (tool server included) hides it, not only this run.
            split = "search" if dataset in SEARCH_DATASETS else "heldout"
            name, new = synthesize_into(store, model, dataset, preset(model, seed=seed), split=split)
            if new:
                created.append(name)
    envs = list_environments(store)
    return {
        "search": [e.name for e in envs if e.dataset in SEARCH_DATASETS],
        "heldout": [e.name for e in envs if e.dataset not in SEARCH_DATASETS],
        "created": created,
    }
