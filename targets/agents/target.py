"""The agent-system target (ADAS, Meta Agent Search) behind the agent's Target seam: a candidate is a
`forward(self, taskInfo)` over ADAS's LLM-agent framework, checked on a few items and scored on a fixed
validation split of a benchmark, its agents running in the sandbox and reaching the inner model only
through the proxy in this process."""

from __future__ import annotations

import ast
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from targets.agents.benchmarks import Benchmark, BenchmarkError, Item, load_benchmark
from targets.agents.cotsc import VoteCurve
from targets.agents.proxy import ProxySettings
from targets.agents.runner import AgentRunner, RunOutcome, offline_sentence
from targets.base import Evaluation, ModelEndpoint, OfflineProposer, SeedCandidate, TargetEnv
from targets.kit import TargetKit, policy_result
from targets.results import CheckReport, CheckResult

ALLOWED_IMPORTS = frozenset(
    {"json", "re", "random", "collections", "math", "itertools", "string", "statistics"}
)

DESCRIPTION = """\
Discover an LLM agent system, as in ADAS (Hu et al. 2024, Meta Agent Search): Python code that combines
calls to a language model — chains of thought, sampling and voting, critique and refinement, debate
between roles, abstraction, routing to experts — into an agent that solves the tasks of a benchmark
({benchmark}) better than the known designs. Every call goes to the same inner model; what counts is how
the calls are arranged. Be creative: think of new ways to combine, check and aggregate the model's work."""

INTERFACE = """\
One function `forward(self, taskInfo)` (helpers may be defined beside it). Provided, with no import:
`LLMAgentBase(output_fields, agent_name, role="helpful assistant", temperature=0.5)`: calling an agent with
a list of `Info`s and an instruction returns one `Info` per output field, in order; `Info(name, author,
content, iteration_idx)` is a namedtuple; `taskInfo` is the task as an `Info`. Return the final answer
(an `Info` or its content). {hint}

def forward(self, taskInfo):
    cot_instruction = "Please think step by step and then solve the task."
    cot_agent = LLMAgentBase(["thinking", "answer"], "Chain-of-Thought Agent", temperature=0.7)
    thinking, answer = cot_agent([taskInfo], cot_instruction)
    return answer"""

RULES = [
    "Exactly one `forward(self, taskInfo)` at the top level; it returns the final answer.",
    "Model calls only through LLMAgentBase; no files, network, processes or threads; imports only: "
    + ", ".join(sorted(ALLOWED_IMPORTS))
    + ".",
    "An output field whose name contains 'answer' receives the benchmark's answer format.",
    "Stay within the per-task time limit and the call budget: a task that runs over scores 0.",
]

ANSWER_FORMS = {
    "mgsm": "an integer",
    "drop": "a short span of text",
    "mmlu": "one letter, A to D",
    "gpqa": "one letter, A to D",
    "arc": "the output grid, a list of lists of integers",
}

FITNESS_MEANING = (
    "The agent's score on the validation split, in percent (accuracy; F1 for DROP): the median of "
    "bootstrap means over items × evaluation seeds, with a seeded 95% percentile bootstrap CI. A task "
    "whose agent raised or timed out scores 0. Higher is better."
)


class AgentTargetConfig(BaseModel):
    """How the agent-system target scores candidates (`[targets.adas]` in the config file)."""

    benchmark: Literal["mgsm", "drop", "mmlu", "gpqa", "arc"] = "mgsm"
    data_path: str | None = None
    """The benchmark's file or folder (MGSM TSVs, DROP .jsonl.gz, MMLU CSVs, GPQA CSV, ARC JSONs); GPQA
    alone may be fetched from the hub (gated) when this is unset."""
    n_valid: int | None = Field(default=None, ge=1)
    """Validation items that every candidate is scored on (default: the benchmark's, e.g. 128)."""
    n_test: int | None = Field(default=None, ge=0)
    split_seed: int = 0
    """Seed of the fixed shuffle that cuts validation and test splits."""
    eval_seeds: list[int] = Field(default_factory=lambda: [0])
    """Repetitions of the validation pass (sampling seed of each task); fitness pools them."""
    probe_items: int = Field(default=2, ge=1)
    """Validation items that the check runs the candidate on."""
    check_max_calls: int = Field(default=60, ge=1)
    task_timeout_s: float = Field(default=120.0, gt=0)
    concurrency: int = Field(default=4, ge=1, le=16)
    """Tasks run at once (each in its own process in the sandbox)."""
    requests_per_s: float = Field(default=4.0, gt=0)
    burst: int = Field(default=8, ge=1)
    max_calls: int = Field(default=2000, ge=1)
    """Inner-model calls one candidate may make per evaluation seed."""
    max_usd: float | None = None
    """Inner-model cost one candidate may spend per evaluation seed (needs the inner model's prices)."""
    max_tokens_per_eval: int = Field(default=3_000_000, ge=1)
    """Inner-model tokens (prompt + completion) one candidate may use per evaluation seed, counted with or
    without prices (estimated from characters when the server reports no usage)."""
    max_prompt_chars: int = Field(default=32_000, ge=1)
    """Longest prompt of one inner-model call (system + user, characters); a longer call is refused."""
    max_prompt_tokens: int = Field(default=12_000, ge=1)
    """Longest prompt of one call in estimated tokens (about three bytes each); a longer call is refused."""
    max_temperature: float = 1.2
    json_mode: bool = True
    baseline_chains: int = Field(default=5, ge=0, le=12)
    """Chains of thought per validation item measured once for the standing baseline, CoT-SC at matched
    token cost (targets.agents.cotsc); 0: no baseline."""
    bootstrap_samples: int = Field(default=2000, ge=100)
    sandbox: str = "local"


class AgentSystemTarget(TargetKit):
    """Its agents run in the sandbox of `self.runner` (not the kit's: each task is a call of its own, with
    the proxy's socket); the fingerprint is the call pattern of a passing check."""

    name = "adas"
    """Memory keeps candidates per target name: set per benchmark in __init__ (`adas-mgsm`, `adas-drop`),
    since fitnesses on two benchmarks are not comparable and a seed measured on one is not on the other."""
    evaluate_seeds_first = True
    """ADAS measures its archive (CoT, CoT-SC, Self-Refine, …) before the search builds on it."""
    summary = "an LLM agent system (ADAS forward(self, taskInfo)), scored on MGSM/DROP/MMLU/GPQA/ARC"
    rules = RULES
    fitness_meaning = FITNESS_MEANING
    models_used = ("inner",)
    """Its agents call `[models.inner]`: the run's preflight probes that endpoint (targets.base)."""

    @property
    def evaluators(self) -> list[dict[str, Any]]:
        """Declared for `disco targets show` (targets.base.evaluators_of)."""
        c = self.config
        items = f"{c.n_valid or 'the default number of'} {c.benchmark.upper()} validation items"
        return [
            {
                "name": "validation",
                "what": f"the agent on {items}, its calls answered by [models.inner] through the proxy",
                "cost": "calls per task × items × seeds inner-model calls; minutes, at the endpoint's rate",
                "device": "remote",
            }
        ]

    def __init__(
        self,
        config: AgentTargetConfig | None = None,
        inner: ModelEndpoint | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        """`cache_dir`: where the CoT-SC baseline is kept once measured (a resumed run does not pay again)."""
        super().__init__()
        self.config = c = config or AgentTargetConfig()
        self.name = f"adas-{c.benchmark}"
        self.inner = inner or ModelEndpoint()
        settings = ProxySettings(
            requests_per_s=c.requests_per_s,
            burst=c.burst,
            task_timeout_s=c.task_timeout_s,
            max_calls=c.max_calls,
            max_usd=c.max_usd,
            max_tokens_per_eval=c.max_tokens_per_eval,
            max_prompt_chars=c.max_prompt_chars,
            max_prompt_tokens=c.max_prompt_tokens,
            max_temperature=c.max_temperature,
            json_mode=c.json_mode,
        )
        self.runner = AgentRunner(self.inner, settings, sandbox=c.sandbox, concurrency=c.concurrency)
        self._bench: Benchmark | None = None
        self._splits: Any = None
        self._cache_dir = cache_dir
        self._curve: VoteCurve | str | None = None
        self.description = DESCRIPTION.format(benchmark=c.benchmark.upper())
        self.interface = INTERFACE.format(hint=f"The answer must be {ANSWER_FORMS[c.benchmark]}.")

    # ------------------------------------------------------------------ data
    def benchmark(self) -> Benchmark:
        if self._bench is None:
            c = self.config
            self._bench = load_benchmark(c.benchmark, c.data_path)
            self._splits = self._bench.split(c.split_seed, c.n_valid, c.n_test)
        return self._bench

    def items(self, split: Literal["valid", "test"] = "valid") -> list[Item]:
        self.benchmark()
        return list(getattr(self._splits, split))

    def not_ready(self) -> str | None:
        """Why nothing can be run now (no inner model, no data), in one sentence; None when ready."""
        why = offline_sentence(self.inner)
        if why:
            return why
        try:
            self.benchmark()
        except BenchmarkError as exc:
            return str(exc)
        return None

    # ------------------------------------------------------------------ checks
    def policy(self, code: str) -> CheckResult:
        from sandbox.policy import check_policy

        passed = "forward(self, taskInfo) with allowed imports"
        result = policy_result(check_policy(code, ALLOWED_IMPORTS), passed)
        if not result.passed:
            return result
        tree = ast.parse(code)
        forward = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "forward"]
        if not forward:
            return CheckResult(
                name="policy", passed=False, message="no top-level `def forward(self, taskInfo)`"
            )
        args = forward[0].args
        if len(args.posonlyargs + args.args) != 2:
            return CheckResult(
                name="policy",
                passed=False,
                message="forward must take exactly (self, taskInfo)",
                line=forward[0].lineno,
            )
        return result

    def check(self, code: str) -> CheckReport:
        """Run the agent on a few validation items in the sandbox: it installs, runs and answers in form."""
        why = self.not_ready()
        if why:
            return CheckReport.from_checks(
                [CheckResult(name="setup", passed=False, message=why[0].upper() + why[1:])]
            )
        bench = self.benchmark()
        items = self.items()[: self.config.probe_items]
        out = self.runner.run(code, items, bench.answer_hint, seed=0, max_calls=self.config.check_max_calls)
        if blocked := out.blocked_by():
            failed = CheckResult(name="runs", passed=False, message=blocked, cause="infrastructure")
            return CheckReport.from_checks([failed])
        if out.failure:
            failed = CheckResult(
                name="installs", passed=False, message=out.failure, traceback=out.stderr or None
            )
            return CheckReport.from_checks([failed])
        checks = [CheckResult(name="installs", passed=True, message="the code ran and defined forward")]
        errors = [t for t in out.tasks if t.error]
        runs_msg = f"task {errors[0].id}: {errors[0].error}" if errors else f"{len(out.tasks)} tasks answered"
        checks.append(
            CheckResult(name="runs", passed=not errors, message=runs_msg, numbers={"errors": len(errors)})
        )
        if not errors:
            # One well-formed answer shows the agent returns the right thing; a sampled model may still
            # garble another (that task then scores 0), which is no reason to repair the code.
            bad = [t for t in out.tasks if not bench.well_formed(t.answer)]
            msg = (
                f"the answer {str(bad[0].answer)[:200]!r} is not of the form asked for: {bench.answer_hint}"
                if bad
                else "answers are in the benchmark's form"
            )
            ok = len(bad) < len(out.tasks)
            checks.append(
                CheckResult(
                    name="answer-form", passed=ok, message=msg, level="warning" if bad and ok else "error"
                )
            )
        checks[-1].numbers |= {"model_calls": float(out.usage.calls)}
        report = CheckReport.from_checks(checks)
        if report.passed:
            from targets.agents.fingerprint import call_pattern

            # Its answers depend on a sampled model; how it calls the model does not.
            self.fingerprints[code] = call_pattern(out.call_log, [it.id for it in items])
        return report

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, code: str, name: str, seeds: list[int] | None = None, split: Literal["valid", "test"] = "valid"
    ) -> Evaluation:
        """Run the agent over the split once per seed; fitness pools every seed's per-item scores."""
        from targets.agents.evaluation import summarise

        start = time.perf_counter()
        why = self.not_ready()
        if why:
            return Evaluation(status="failed", reason=why)
        bench = self.benchmark()
        items = self.items(split)
        outcomes: dict[int, RunOutcome] = {}
        for seed in seeds or self.config.eval_seeds:
            outcomes[seed] = self.runner.run(code, items, bench.answer_hint, seed=seed)
        result = summarise(bench, items, outcomes, self.config.bootstrap_samples, time.perf_counter() - start)
        if result.status == "ok" and split == "valid" and self.config.baseline_chains:
            result.details["cot_sc"] = self._versus_cot_sc(items, result)
            result.seconds = time.perf_counter() - start
        return result

    def _versus_cot_sc(self, items: list[Item], result: Evaluation) -> dict[str, Any]:
        """The candidate against CoT-SC at matched token cost (measured on first use, then kept)."""
        from targets.agents.cotsc import compare

        curve = self.cot_sc_curve(items)
        if isinstance(curve, str):
            return {"unavailable": curve}
        m = result.metrics
        runs = max(1, len(result.item_scores))
        tokens = (m.get("prompt_tokens", 0.0) + m.get("completion_tokens", 0.0)) / (runs * len(items))
        matched = compare(curve, [it.id for it in items], result.item_scores, tokens)
        return matched.model_dump() | {"within_cost": matched.within_cost, "samples": curve.samples,
                                       "measured_tokens": curve.tokens}  # fmt: skip

    def cot_sc_curve(self, items: list[Item]) -> VoteCurve | str:
        """CoT-SC's score for 1 … baseline_chains chains on `items` (or why it could not be measured): kept
        in memory and, keyed by what it depends on, sealed in the cache folder (every score reference is:
        a file anything else wrote is measured again, never believed)."""
        from targets.agents.cotsc import measure
        from targets.cache_dirs import read_sealed, write_sealed

        if isinstance(self._curve, VoteCurve):
            return self._curve
        c, inner = self.config, self.inner
        depends = [c.benchmark, [it.id for it in items], c.baseline_chains, inner.model, inner.base_url]
        key = json.dumps([*depends, inner.max_tokens, c.json_mode])
        path = None
        if self._cache_dir is not None:
            digest = hashlib.sha256(key.encode()).hexdigest()[:16]
            path = self._cache_dir / "adas" / f"cot_sc-{digest}.json"
            if (text := read_sealed(path, self._cache_dir)) is not None:
                self._curve = VoteCurve.model_validate_json(text)
                return self._curve
        self._curve = measure(self.runner, self.benchmark(), items, c.baseline_chains)
        if path is not None and self._cache_dir is not None and isinstance(self._curve, VoteCurve):
            write_sealed(path, self._cache_dir, self._curve.model_dump_json())
        return self._curve

    # ------------------------------------------------------------------ archive and proposer
    def seeds(self) -> list[SeedCandidate]:
        from targets.agents.seeds import seed_archive

        return seed_archive(self.config.benchmark)

    def offline_proposer(self, seed: int) -> OfflineProposer:
        from targets.agents.proposer import AgentProposer

        return AgentProposer(seed, self.config.benchmark)

    def close(self) -> None:
        self.runner.close()
        super().close()


def make_target(options: dict[str, Any], env: TargetEnv) -> AgentSystemTarget:
    """The registry's factory: options are the config's `[targets.adas]` table; the inner model is
    `[models.inner]`. Nothing is loaded or started here (a bad data path is reported by check/evaluate)."""
    config = AgentTargetConfig.model_validate(options)
    return AgentSystemTarget(config, inner=env.inner, cache_dir=env.cache_dir)
