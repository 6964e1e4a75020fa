"""Running untrusted candidate code, bounded and reported.

- `policy`: the static AST check run before any code executes.
- `models`: `SandboxRequest`, `SandboxLimits`, `SandboxResult` (shared by all backends).
- `base`: the `Sandbox` protocol, `arun` for async callers, and the result handling written once.
- `registry`: `get_sandbox("local" | "docker" | "e2b")`, imported lazily.
- `local` (+ `isolation`, `pool`, `worker`, `confine`): the default, daemon-free backend.
- `docker_backend`, `e2b_backend`: containers through docker-py, and E2B's cloud sandboxes.
- `confine`: the same isolation applied in place to a long-lived pool worker (the DPO sweep's).
- `doctor`: what each backend achieves on this host, measured by a probe run.
"""
