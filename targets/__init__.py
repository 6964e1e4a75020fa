"""What disco can discover. Each target declares its candidate interface, rules, checks and evaluators.

- `results`: the structured check results every target returns.
- `dpo/`: preference-optimization losses (DiscoPOP-style), the first target.
"""
