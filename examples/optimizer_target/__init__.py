"""A worked example of a user target: discovering an optimizer's update rule (docs/targets.md).

- `target.py`: the target (`make_target`), its texts for the prompt, its evaluation against Adam.
- `problems.py`: the small CPU problems and how a rule is scored on them.
- `sandboxed.py`: the checks, fingerprint and scoring that run inside disco's sandbox.
- `blocks.py`: the building blocks of update rules, the seed archive and the offline proposer.
"""
