"""The meta-agent and the `disco` command (docs/architecture.md has the layers).

- `graph`, `nodes`, `state`: the LangGraph loop: plan, design, reflect ×2, check, repair ×3, evaluate,
  confirm, record.
- `runner`: runs the loop headless with budgets, endpoint back-off, control and resume; `session`
  opens a data dir's services.
- `models/`: any OpenAI-compatible model (streamed, probed, recorded, replayed).
- `evidence`, `confirm`, `fresh`: when a candidate counts as best, and its difference to the baseline.
- `events`, `runs`, `control`: a run's directory, its event log and its control channel.
- `report/`: the morning report; `chat`: the chat agent; `cli`, `commands/`: the command line.
"""
