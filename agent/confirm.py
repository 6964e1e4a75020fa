"""The `confirm` step behind evidence before best: compare a candidate with the incumbent over their common
seeds, and give a promising one rounds of fresh seeds (for it and the incumbent alike) until the rule
decides or the rounds run out.

Everything a round costs is on disk before the step returns: the plan of seeds (`seeds/plan.json`, written
once, so that a re-run after a kill asks for the same seeds) and each extra seed's item scores
(`candidates/<id>/seeds/<seed>.json`). A step that runs again from its first line after `kill -9` finds
them and trains nothing twice; an evidence event is logged once per (candidate, round).
"""

from __future__ import annotations

from typing import Any

from agent.config import EvidenceConfig
from agent.events import EventLog, EvidencePayload, ToolPayload
from agent.evidence import Evidence, compare, next_seeds
from agent.fresh import CONFIRM, FRESH, Fresh, confirmation_claims, fresh_vs_baseline, read_fresh
from agent.runs import RunDir
from targets.base import Interval, Target
from targets.racing import Look, RaceConfig, look, seed_differences

PLAN = "seeds/plan.json"


def evidence_key(candidate: str | None, round_: Any) -> str:
    """The exactly-once key of an evidence event (the runner restores the set from the event log)."""
    return f"{candidate}#{round_}"


class Confirmer:
    def __init__(
        self, run: RunDir, target: Target, config: EvidenceConfig, events: EventLog, logged: set[str]
    ) -> None:
        self.run = run
        self.target = target
        self.config = config
        self.events = events
        self.logged = logged
        """Keys of evidence events already in the log."""

    # ------------------------------------------------------------------ scores on disk
    def scores(self, cid: str, evaluation: dict[str, Any] | None = None) -> dict[str, list[float]]:
        """A candidate's item scores per seed: its default seeds (evaluation.json), then its extra seeds."""
        record: dict[str, Any] = evaluation or self.run.read_candidate_json(cid, "evaluation.json") or {}
        out = {str(k): list(v) for k, v in (record.get("item_scores") or {}).items()}
        folder = self.run.root / "candidates" / cid / "seeds"
        for path in sorted(folder.glob("[0-9]*.json")):
            saved = self.run.read_candidate_json(cid, f"seeds/{path.name}") or {}
            if saved.get("scores"):
                out[str(saved["seed"])] = list(saved["scores"])
        return out

    def _used_seeds(self, cid: str) -> set[int]:
        evaluation = self.run.read_candidate_json(cid, "evaluation.json") or {}
        folder = self.run.root / "candidates" / cid / "seeds"
        extra = {int(p.stem) for p in folder.glob("[0-9]*.json")}
        return {int(k) for k in evaluation.get("item_scores") or {}} | extra

    def _plan(self, cid: str, incumbent: str) -> list[list[int]]:
        """The seeds of each extra round, chosen once: fresh for both the candidate and the incumbent."""
        saved = self.run.read_candidate_json(cid, PLAN)
        if saved and saved.get("incumbent") == incumbent:
            return [list(r) for r in saved["rounds"]]
        cfg = self.config
        fresh = next_seeds(
            self._used_seeds(cid) | self._used_seeds(incumbent), cfg.extra_rounds * cfg.seeds_per_round
        )
        rounds = [fresh[i : i + cfg.seeds_per_round] for i in range(0, len(fresh), cfg.seeds_per_round)]
        self.run.write_candidate_file(cid, PLAN, {"incumbent": incumbent, "rounds": rounds})
        return rounds

    def _evaluate_seeds(self, cid: str, code: str, name: str, seeds: list[int], why: str) -> None:
        """Evaluate `cid` on the seeds it lacks and keep each seed's scores before returning."""
        folder = self.run.root / "candidates" / cid / "seeds"
        have = set(self.scores(cid))
        missing = [s for s in seeds if str(s) not in have and not (folder / f"{s}.json").exists()]
        if not missing:
            return
        evaluation = self.target.evaluate(code, name, seeds=missing)
        baseline = evaluation.baseline_item_scores
        for seed in missing:
            saved = {
                "seed": seed,
                "scores": evaluation.item_scores.get(str(seed)),
                "baseline_scores": baseline.get(str(seed)),
                "status": evaluation.status,
                "reason": evaluation.reason,
                "beta": evaluation.details.get("beta"),
                "fitness": evaluation.fitness.model_dump() if evaluation.fitness else None,
                "vs_baseline": evaluation.vs_baseline.model_dump() if evaluation.vs_baseline else None,
                "seconds": evaluation.seconds,
                "evaluated_seeds": missing,
                "for": why,
            }
            self.run.write_candidate_file(cid, f"seeds/{seed}.json", saved)
        fit = evaluation.fitness
        summary = f"fitness {fit.value:+.4f}" if fit else f"failed: {evaluation.reason[:200]}"
        args = {"name": name, "seeds": missing, "for": why}
        self.events.append(ToolPayload(tool="evaluate_seeds", args=args, result=summary), cid)

    # ------------------------------------------------------------------ the decision
    def _log(self, cid: str, incumbent: str | None, ev: Evidence | None, round_: int, final: bool) -> None:
        key = evidence_key(cid, round_)
        if key in self.logged:
            return
        self.logged.add(key)
        evidence = EvidencePayload(
            verdict=ev.verdict if ev else "first",
            incumbent=incumbent,
            diff=ev.diff if ev else None,
            p_better=ev.p_better if ev else None,
            p_value=ev.p_value if ev else None,
            rule=self.config.rule,
            confidence=self.config.confidence,
            seeds=ev.seeds if ev else [],
            round=round_,
            final=final,
        )
        self.events.append(evidence, cid)

    def decide(
        self, cid: str, code: str, name: str, evaluation: dict[str, Any], incumbent: str | None
    ) -> Evidence:
        """The verdict on `cid` against `incumbent`, after the extra rounds it takes (≤ extra_rounds)."""
        cfg = self.config
        mine = self.scores(cid, evaluation)
        if incumbent is not None and cfg.rule == "race":
            return self._race(cid, code, name, evaluation, incumbent)
        if incumbent is None:
            if cfg.rule == "race":  # a fresh-seed difference to the baseline, as every challenger gets
                rules = self.race_config()
                # without a measured σ an interval needs the candidate's own spread: own_sd_from seeds
                n = rules.stages[0] if rules.sigma else max(rules.stages[0], rules.own_sd_from)
                seeds = self._race_seeds(cid, evaluation, cid, n)
                self._evaluate_seeds(cid, code, name, seeds[:n], "fresh seeds")
                self.write_fresh(cid)
                self.confirm_claims({cid: (code, name, evaluation)})
            first = Evidence(
                verdict="first",
                confidence=cfg.confidence,
                seeds=sorted(int(k) for k in mine),
                n_items=sum(len(v) for v in mine.values()),
                reason="the run's first evaluated candidate becomes the incumbent",
            )
            self._log(cid, None, first, 0, True)
            self.run.write_candidate_file(
                cid,
                "evidence.json",
                {"incumbent": None, "rounds": [{"round": 0} | first.model_dump(mode="json")]},
            )
            return first
        record = self.run.read_candidate_json(incumbent, "record.json") or {}
        rounds = self._plan(cid, incumbent)
        history: list[dict[str, Any]] = []
        for round_ in range(len(rounds) + 1):
            if round_ > 0:
                seeds = rounds[round_ - 1]
                self._evaluate_seeds(cid, code, name, seeds, f"round {round_} against {incumbent}")
                self._evaluate_seeds(
                    incumbent,
                    record.get("code", ""),
                    record.get("name", ""),
                    seeds,
                    f"round {round_} for {cid}",
                )
            theirs = self.scores(incumbent)
            ev = compare(
                self.scores(cid, evaluation),
                theirs,
                confidence=cfg.confidence,
                n_bootstrap=cfg.n_bootstrap,
                seed=cfg.bootstrap_seed,
                min_seeds=cfg.min_seeds,
            )
            final = ev.verdict != "promising" or round_ == len(rounds)
            self._log(cid, incumbent, ev, round_, final)
            history.append({"round": round_} | ev.model_dump(mode="json"))
            if final:
                break
        self.run.write_candidate_file(cid, "evidence.json", {"incumbent": incumbent, "rounds": history})
        return ev

    # ------------------------------------------------------------------ the race (targets.racing)
    def _selection_seeds(self, cid: str, evaluation: dict[str, Any] | None = None) -> set[int]:
        """Seeds a candidate's evaluation chose something on (the DPO target's β): never scored."""
        record: dict[str, Any] = evaluation or self.run.read_candidate_json(cid, "evaluation.json") or {}
        return {int(s) for s in (record.get("details") or {}).get("selection_seeds") or []}

    def race_config(self) -> RaceConfig:
        cfg = self.config
        return RaceConfig(
            sigma=cfg.sigma or getattr(self.target, "seed_sigma", None),
            stages=cfg.stages,
            alpha=cfg.alpha,
            candidate_budget=cfg.candidate_budget,
            min_effect=cfg.min_effect,
            futility_z=cfg.futility_z,
            confirm_seeds=cfg.confirm_seeds,
        )

    def _race_seeds(self, cid: str, evaluation: dict[str, Any], incumbent: str, n: int) -> list[int]:
        """The challenger's race order, fixed once (`seeds/plan.json`): its own evaluation seeds that chose
        nothing, then the smallest seeds neither used to choose; the incumbent's earlier race seeds are
        among them, so an incumbent is not trained again on seeds it already has."""
        saved = self.run.read_candidate_json(cid, PLAN)
        if saved and saved.get("incumbent") == incumbent and saved.get("rule") == "race":
            return [int(s) for s in saved["seeds"]]
        skip = self._selection_seeds(cid, evaluation) | self._selection_seeds(incumbent)
        own = sorted(int(s) for s in (evaluation.get("item_scores") or {}) if int(s) not in skip)
        order = own + next_seeds(self._used_seeds(cid) | skip, max(0, n - len(own)))
        self.run.write_candidate_file(cid, PLAN, {"incumbent": incumbent, "rule": "race", "seeds": order})
        return order

    def _race(self, cid: str, code: str, name: str, evaluation: dict[str, Any], incumbent: str) -> Evidence:
        """Race `cid` against the incumbent stage by stage on seeds that chose nothing (targets.racing)."""
        rules = self.race_config()
        record = self.run.read_candidate_json(incumbent, "record.json") or {}
        order = self._race_seeds(cid, evaluation, incumbent, rules.stages[-1])
        history: list[dict[str, Any]] = []
        for round_, n in enumerate(rules.stages):
            seeds = order[:n]
            self._evaluate_seeds(cid, code, name, seeds, f"{n} seeds against {incumbent}")
            self._evaluate_seeds(
                incumbent, record.get("code", ""), record.get("name", ""), seeds, f"{n} seeds for {cid}"
            )
            keep = {str(s) for s in seeds}
            mine = {k: v for k, v in self.scores(cid, evaluation).items() if k in keep}
            theirs = {k: v for k, v in self.scores(incumbent).items() if k in keep}
            diffs = seed_differences(mine, theirs)
            last = n == rules.stages[-1]
            if len(diffs) < rules.stages[0]:
                ev = Evidence(
                    verdict="not_better",
                    confidence=self.config.confidence,
                    rule="race",
                    reason=f"nothing to compare on seeds {seeds}: {len(diffs)} comparable",
                )
                final = True
            else:
                step = look(diffs, rules)
                ev = _evidence_of(step, rules, sorted(int(k) for k in mine if k in theirs))
                final = step.decision != "continue" or last or step.n < n  # a seed that did not pair ends it
            self._log(cid, incumbent, ev, round_, final)
            history.append({"round": round_} | ev.model_dump(mode="json"))
            if final:
                break
        self.run.write_candidate_file(
            cid, "evidence.json", {"incumbent": incumbent, "rule": "race", "rounds": history}
        )
        if ev.verdict == "best" and rules.confirm_seeds:
            self._confirm(cid, code, name, evaluation, rules.confirm_seeds)
        self.write_fresh(cid)
        self.write_fresh(incumbent)  # trained on this race's seeds too
        self.confirm_claims({cid: (code, name, evaluation)})
        return ev

    def _confirm(self, cid: str, code: str, name: str, evaluation: dict[str, Any], n: int) -> None:
        """Train a claimed candidate on n seeds it has never seen (chosen once, `seeds/confirm.json`): what is
        shown for it from now on comes from these alone (agent.fresh)."""
        saved = self.run.read_candidate_json(cid, CONFIRM)
        if saved and len(saved.get("seeds") or []) == n:
            seeds = [int(s) for s in saved["seeds"]]
        else:
            seeds = next_seeds(self._used_seeds(cid) | self._selection_seeds(cid, evaluation), n)
            self.run.write_candidate_file(cid, CONFIRM, {"seeds": seeds})
        self._evaluate_seeds(cid, code, name, seeds, "confirmation")

    def confirm_claims(self, known: dict[str, tuple[str, str, dict[str, Any]]]) -> None:
        """Train on confirmation seeds every candidate Benjamini–Hochberg now calls better than the baseline
        on the seeds it raced on (`known`: code, name and evaluation of candidates not recorded yet), until
        none is left: its claim then stands or falls on those seeds alone (agent.fresh.baseline_verdicts).
        Each candidate is confirmed at most once; its seeds are planned once, so a re-run after a kill
        trains nothing twice."""
        n = self.race_config().confirm_seeds
        done: set[str] = set()
        while n and (claims := confirmation_claims(self._run_fresh(), self.config.q) - done):
            for cid in sorted(claims):
                done.add(cid)  # a confirmation that failed leaves it shown from its race: not again
                code, name, evaluation = known.get(cid) or self._recorded(cid)
                self._confirm(cid, code, name, evaluation, n)
                self.write_fresh(cid)

    def _run_fresh(self) -> dict[str, Fresh]:
        """Every candidate of the run with a difference to the baseline, as shown now."""
        out = {}
        for path in sorted((self.run.root / "candidates").glob(f"*/{FRESH}")):
            fresh = read_fresh(self.run, path.parent.name)
            if fresh is not None:
                out[path.parent.name] = fresh
        return out

    def _recorded(self, cid: str) -> tuple[str, str, dict[str, Any]]:
        record = self.run.read_candidate_json(cid, "record.json") or {}
        evaluation = self.run.read_candidate_json(cid, "evaluation.json") or {}
        return record.get("code", ""), record.get("name", ""), evaluation

    def write_fresh(self, cid: str) -> None:
        """`vs_baseline.json`: the candidate's difference to the baseline on its seeds that chose nothing."""
        fresh = fresh_vs_baseline(self.run, cid, self.race_config())
        if fresh is not None:
            self.run.write_candidate_file(cid, FRESH, fresh.model_dump(mode="json"))


def _evidence_of(step: Look, rules: RaceConfig, seeds: list[int]) -> Evidence:
    """A race look as the loop's verdict: claimed → best; still racing or ahead at the end → promising."""
    if step.decision == "better":
        verdict = "best"
    elif step.decision == "continue" or (step.decision == "not_separated" and step.diff > 0):
        verdict = "promising"
    else:
        verdict = "not_better"
    diff = None
    if step.ci_low is not None and step.ci_high is not None:
        diff = Interval(value=step.diff, ci_low=step.ci_low, ci_high=step.ci_high)
    return Evidence(
        verdict=verdict,
        diff=diff,
        confidence=rules.confidence,
        seeds=seeds[: step.n],
        reason=f"{step.decision}: {step.reason} (diff {step.diff:+.4f} on {step.n} seeds)",
        rule="race",
        p_value=step.p_value,
        tested_at=rules.error_rate(),
    )
