"""Latency and tokens of each LLM role against a real local server: llama-cpp-python serving SmolLM2-135M-Instruct
(.ci/llm-setup.sh) on a free loopback port with one thread, the way the test suite runs it.

Each role answers the same inputs ``--repeat`` times (critic: a baseline controller; diagnostician: an evaluated
curve and a crash; proposer: a first proposal, without tools, fitted to ``--context-tokens``). Prints the
endpoint's probe, then per role the calls, mean and max seconds, prompt and completion tokens (the server's usage
figures) and completion tokens per second.

    python benchmarks/llm_roles_local.py [--repeat 3] [--context-tokens 4096] [--max-output-tokens 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--context-tokens", type=int, default=4096)
    ap.add_argument("--max-output-tokens", type=int, default=256)
    args = ap.parse_args()

    from autotts_graph.graph.agents.client import CallFailed
    from autotts_graph.graph.agents.factory import make_role
    from autotts_graph.graph.agents.roles import CriticInput, CurvePoint, DiagnoseInput, ProposerInput
    from autotts_graph.graph.configuration import ROLES, RoleSettings, RunConfig
    from llm_server import KEY_ENV, LlamaServer

    os.environ.setdefault(KEY_ENV, "sk-local")
    source = (REPO / "sandbox" / "controllers" / "asc.py").read_text()
    curve = [CurvePoint(env="m1/search", beta=b, accuracy=40 + 20 * b, avg_cost=8000 + 9000 * b) for b in (0, 1)]
    server = LlamaServer(Path(tempfile.mkdtemp())).start()
    try:
        settings = RoleSettings(kind="llm", model="smollm2", base_url=server.base_url, api_key_env=KEY_ENV,
                                temperature=0.0, max_output_tokens=args.max_output_tokens,
                                context_tokens=args.context_tokens, timeout_s=600)
        cfg = RunConfig(proposer=settings, critic=settings, diagnostician=settings)
        roles = {r: make_role(r, cfg) for r in ROLES}
        caps = roles["critic"].client.caps
        print(caps.summary())
        print(f"  probe: {len(caps.steps)} requests in {caps.probe_seconds:.1f} s")
        work = {
            "critic": lambda: roles["critic"].review(CriticInput(source=source)),
            "diagnostician": lambda: roles["diagnostician"].diagnose(DiagnoseInput(
                candidate_id="c", source=source, curve=curve)),
            "proposer": lambda: roles["proposer"].propose(ProposerInput(round=0, search_envs=["m1/search"],
                                                                        betas=[0.0, 1.0])),
        }
        for name, fn in work.items():
            failed = 0
            for _ in range(args.repeat):
                try:
                    fn()
                except CallFailed:
                    failed += 1
            calls = roles[name].take_calls()
            secs = [c.seconds for c in calls]
            tin = sum(c.prompt_tokens for c in calls)
            tout = sum(c.completion_tokens for c in calls)
            print(f"{name:<14} {len(calls):3d} calls ({args.repeat} answers, {failed} failed): mean "
                  f"{statistics.mean(secs):5.1f} s, max {max(secs):5.1f} s; prompt {tin / len(calls):6,.0f} and "
                  f"completion {tout / len(calls):5,.0f} tokens per call; {tout / sum(secs):5.1f} completion "
                  f"tokens/s over the calls")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
