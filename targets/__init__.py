"""What disco can discover. Each target declares its candidate interface, rules, checks and evaluators.

- `base`: the Target protocol and the data crossing it (Evaluation, EvaluatorInfo, TargetInfo).
- `registry`: targets by builtin name, file, `module:factory` or entry point (docs/targets.md).
- `sources`: a user target's package, shipped into the sandbox with each request.
- `results`: the structured check results every target returns.
- `dpo/`: preference-optimization losses (DiscoPOP-style), the first target.
"""
