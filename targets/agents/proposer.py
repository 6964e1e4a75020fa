"""The offline proposer of the agent-system target: no LLM, only ADAS's seed designs with their knobs
varied (samples of CoT-SC, debate rounds and roles, refinement rounds, temperatures) and two
recombinations (step-back + self-consistency, self-consistency + a critic). It drives `disco run` without a
meta model and is the search baseline that a model must beat."""

from __future__ import annotations

import random
from collections.abc import Callable

from targets.agents import seeds as S
from targets.base import ParentInfo, Proposal
from targets.results import CheckResult

GENERIC_ROLES = ["Careful Checker", "Creative Thinker", "Domain Expert", "Skeptical Reviewer"]


def step_back_sc(n: int, temperature: float) -> str:
    return f"""def forward(self, taskInfo):
    # Step-back + Self-Consistency: one abstraction of the principles, then N sampled solutions that use it,
    # and the majority answer.
    from collections import Counter

    principle_agent = LLMAgentBase(["thinking", "principle"], "Principle Agent")
    thinking, principle = principle_agent([taskInfo], {S.PRINCIPLE!r})
    cot_agents = [
        LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature={temperature})
        for _ in range({n})
    ]
    answers = []
    for agent in cot_agents:
        thinking_i, answer = agent([taskInfo, principle], {S.PRINCIPLE_COT!r})
        answers.append(str(answer.content))
    return Counter(answers).most_common(1)[0][0]
"""


def sc_critic(n: int, temperature: float) -> str:
    return f"""def forward(self, taskInfo):
    # Self-Consistency + critic: sample N solutions, take the majority, and let a critic revise it once
    # when the samples disagree.
    from collections import Counter

    cot_agents = [
        LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature={temperature})
        for _ in range({n})
    ]
    infos, answers = [], []
    for agent in cot_agents:
        thinking, answer = agent([taskInfo], {S.COT!r})
        infos.extend([thinking, answer])
        answers.append(str(answer.content))
    best, votes = Counter(answers).most_common(1)[0]
    if votes == len(answers):
        return best
    critic = LLMAgentBase(["feedback", "answer"], "Critic Agent", temperature=0.2)
    feedback, answer = critic([taskInfo] + infos, {S.DEBATE_FINAL!r})
    return answer
"""


class AgentProposer:
    """Designs from ADAS's building blocks, seeded by the run; each proposal names its knobs."""

    def __init__(self, seed: int, benchmark: str = "mgsm") -> None:
        self.seed = seed
        self.roles = S.ROLES.get(benchmark, S.ROLES["mgsm"])

    def _rng(self, index: int, salt: int = 0) -> random.Random:
        return random.Random(self.seed * 1_000_003 + index * 7919 + salt)

    def _families(self, rng: random.Random) -> dict[str, Callable[[], tuple[str, str, str]]]:
        temps = [0.5, 0.7, 0.8, 1.0]
        pool = self.roles + GENERIC_ROLES

        def cot_sc() -> tuple[str, str, str]:
            n, t = rng.choice([3, 5, 7, 9]), rng.choice(temps)
            return (
                f"cot_sc_n{n}_t{t}",
                f"Self-consistency over {n} chains at temperature {t}.",
                S.cot_sc(n, t),
            )

        def debate() -> tuple[str, str, str]:
            roles = rng.sample(pool, rng.randint(2, 4))
            rounds, t = rng.randint(1, 3), rng.choice(temps)
            code = S.debate(roles, rounds, t)
            return (
                f"debate_{len(roles)}x{rounds}_t{t}",
                f"Debate of {', '.join(roles)} over {rounds} rounds.",
                code,
            )

        def refine() -> tuple[str, str, str]:
            k = rng.randint(1, 5)
            return f"self_refine_k{k}", f"Self-refine with at most {k} critique rounds.", S.self_refine(k)

        def diversity() -> tuple[str, str, str]:
            n, t = rng.randint(2, 5), rng.choice(temps)
            return (
                f"quality_diversity_n{n}_t{t}",
                f"{n} deliberately different solutions, then a decision.",
                (S.quality_diversity(n, t)),
            )

        def routing() -> tuple[str, str, str]:
            roles = rng.sample(pool, rng.randint(2, 4))
            return (
                f"role_assignment_{len(roles)}",
                f"A router picks one of {', '.join(roles)}.",
                (S.role_assignment(roles)),
            )

        def principled_sc() -> tuple[str, str, str]:
            n, t = rng.choice([3, 5]), rng.choice(temps)
            return (
                f"step_back_sc_n{n}_t{t}",
                "Step-back principles, then self-consistency.",
                step_back_sc(n, t),
            )

        def critic_sc() -> tuple[str, str, str]:
            n, t = rng.choice([3, 5]), rng.choice(temps)
            return f"sc_critic_n{n}_t{t}", "Self-consistency; a critic settles disagreement.", sc_critic(n, t)

        return {
            "cot_sc": cot_sc,
            "debate": debate,
            "self_refine": refine,
            "quality_diversity": diversity,
            "role_assignment": routing,
            "step_back_sc": principled_sc,
            "sc_critic": critic_sc,
        }

    def propose(self, index: int, parents: list[ParentInfo]) -> Proposal:
        rng = self._rng(index)
        families = self._families(rng)
        names = list(families)
        # Every family once (in an order drawn from the run's seed), then half of the time a variation of
        # the best design's family: knobs alone would rarely make a new design early on.
        order = random.Random(self.seed).sample(names, len(names))
        family, parent_ids = order[index % len(order)], []
        ranked = sorted((p for p in parents if p.fitness is not None), key=lambda p: -(p.fitness or 0.0))
        if index >= len(order) and ranked and rng.random() < 0.5:
            best = ranked[0]
            match = next((f for f in names if best.name.startswith(f)), None)
            if match:
                family, parent_ids = match, [best.id]
        name, thought, code = families[family]()
        return Proposal(name=name, thought=thought, code=code, parent_ids=parent_ids)

    def repair(self, index: int, code: str, failures: list[CheckResult], attempt: int) -> Proposal:
        """A failing design is replaced by the simplest sound one (the proposer cannot read tracebacks)."""
        n = 3 + 2 * attempt
        return Proposal(
            name=f"cot_sc_n{n}_repair",
            thought=f"Replaces a design that failed {failures[0].name if failures else 'its checks'}.",
            code=S.cot_sc(n, 0.8),
        )
