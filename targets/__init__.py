"""What disco can discover. Each target declares its candidate interface, rules, checks and evaluators.

- `base`: the Target protocol and the data crossing it (Evaluation, EvaluatorInfo, TargetInfo).
- `registry`: targets by builtin name, file, `module:factory` or entry point (docs/targets.md), and the
  commands a target adds to `disco` (`commands`).
- `kit`: the plumbing a target would otherwise write again (defaults, a sandbox caller, checks in it).
- `sources`: a user target's package, shipped into the sandbox with each request.
- `results`: the structured check results every target returns.
- `racing`, `progress`, `cache_dirs`: statistics of the race, progress reports, a target's caches.
- `dpo/`: preference-optimization losses (DiscoPOP-style); `agents/`: agent systems (ADAS).
"""
