"""The meta-agent and the `disco` command (docs/architecture.md has the layers).

- `graph`, `nodes`, `state`: the LangGraph loop: plan, design, reflect ×2, check, repair ×3, evaluate,
  confirm, record.
- `runner`: runs the loop headless, handing each job between steps to its module: `budgets` (a pure
  `exceeded`), `endpoint_watch` (back-off, pause), `job_watch` (GPU job news), `stop` (signals),
  `control` (the person's commands); `session` is the composition root that opens a run's services.
- `models/`: any OpenAI-compatible model (streamed, probed, recorded, replayed).
- `evidence`, `confirm`, `fresh`: when a candidate counts as best, and its difference to the baseline.
- `events`, `run_state`, `runs`, `control`: a run's typed event log, the one fold of it into what is
  known of the run, its directory and its control channel.
- `report/`: the morning report; `chat`: the chat agent; `cli`, `commands/`: the command line.
"""
