"""The agent-system target (ADAS, Meta Agent Search): a candidate is `forward(self, taskInfo)` over a small
LLM-agent framework. `framework` runs inside the sandbox, `proxy` in the parent (the only way to the inner
model), `benchmarks` loads MGSM / DROP / MMLU / GPQA / ARC, `scoring` gives fitness with a bootstrap CI,
`seeds` holds ADAS's seed archive, `proposer` the offline proposer, `target` the Target itself."""
