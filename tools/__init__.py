"""What the loop and the chat agent can do besides thinking, between the agent and the layers below it.

- `toolbox`: `Toolbox`, one method per tool (check, evaluate, memory queries, GPU jobs); the loop calls it
  directly, the chat agent through `langchain_tools`; each call is reported as a `ToolCall`.
- `langchain_tools`: the same tools as LangChain tools, with their argument schemas.
- `jobs/`: the DPO job queue: real training runs as queued jobs (local GPUs, Slurm, Ray).
- `processes`: process identity that survives pid reuse (a runner's, a job's).
"""
