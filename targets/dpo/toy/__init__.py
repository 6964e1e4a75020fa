"""The toy DPO task: the DiscoPOP paper's GPT-2 / IMDb study made exact, offline and CPU-cheap.

- `language`: the synthetic review language, its grammar and the exact, over-optimisable reward
- `tokenizer`: a word-level `PreTrainedTokenizerFast` with `<pad>`, `<eos>`, `<unk>`
- `config`: `ToyTaskConfig`, every knob of the task (model, SFT, pairs, evaluation)
- `task`: `load_toy_task(config, cache_dir) -> ToyTask`, built once and cached atomically
- `sampling`: batched inverse-CDF sampling with common random numbers; sequence log-probs
- `evaluate`: `evaluate_policy(policy, reference, task, seed=...) -> PolicyEval`
"""
