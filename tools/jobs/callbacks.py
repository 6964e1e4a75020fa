"""The training callback of a job's worker: streams every log step and stops hopeless runs.

Imported only inside the training process (it needs transformers). Each log step becomes one JSON line
(`kind`: train, eval or summary) in metrics.jsonl, which the agent reads incrementally
(`JobQueue.metrics`) and copies into its event log, and one human line on stdout, the job's log file.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

KEYS = ("loss", "rewards/margins", "rewards/accuracies", "grad_norm", "learning_rate")
EVAL_KEYS = ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies")
SUMMARY_KEYS = ("train_loss", "train_runtime", "train_steps_per_second")


class StreamMetrics(TrainerCallback):
    """Append each log entry to `path`; stop training when the loss passes `stop_if_loss_above`."""

    def __init__(self, path: Path, stop_if_loss_above: float | None = None) -> None:
        self.path = path
        self.stop_if_loss_above = stop_if_loss_above
        self.stopped: str | None = None
        """Why this callback stopped training (None: it did not)."""

    def on_train_begin(self, args, state, control, **kwargs):
        print(f"[train] {state.max_steps} steps", flush=True)

    def on_log(self, args, state, control, logs: dict[str, Any] | None = None, **kwargs):
        logs = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, int | float)}
        kind = (
            "eval"
            if any(k.startswith("eval_") for k in logs)
            else "summary"
            if "train_loss" in logs
            else "train"
        )
        record = {"kind": kind, "step": state.global_step, "time": time.time(), "epoch": state.epoch, **logs}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        keys = {"train": KEYS, "eval": EVAL_KEYS, "summary": SUMMARY_KEYS}[kind]
        shown = " ".join(f"{k.split('/')[-1]}={record[k]:.4g}" for k in keys if k in record)
        print(f"[{kind}] step {state.global_step}/{state.max_steps} {shown}", flush=True)
        loss = record.get("loss") if kind == "train" else None
        limit = self.stop_if_loss_above
        if loss is not None and limit is not None and math.isfinite(loss) and loss > limit:
            self.stopped = (
                f"the training loss reached {loss:.4g} at step {state.global_step}, above the hopeless mark "
                f"{limit:g}: stopped early"
            )
            print(f"[train] {self.stopped}", flush=True)
            control.should_training_stop = True
        return control
