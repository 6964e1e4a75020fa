"""The DPO-loss target: a candidate is one loss function in the DiscoPOP form.

- `candidate`: compiling candidate code; `policy`: its import allow-list; `checks`: validity checks.
- `zoo/`: baseline losses with citations, written exactly as candidates.
- `toy/`: the exact, offline preference task; `trainer` / `refcache`: TRL training with any loss.
- `sweep` / `fitness` / `bench`: β-sweep × seeds → reward–KL frontier and a fitness with a CI.
- `real`: the same trainer on a real model and data set (the GPU path).
"""
