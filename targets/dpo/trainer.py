"""Train a policy with a candidate DPO-style loss through TRL's DPOTrainer.

TRL 1.16 has no loss hook, so `CandidateDPOTrainer` overrides `compute_loss`: one policy forward through
TRL's fused LM head, summed completion log-probs, reference log-probs from the batch (precomputed once by
`targets.dpo.refcache`) and the candidate's per-example losses. Everything else — data collation,
optimiser, scheduler, seeding, device placement — is TRL's and transformers', so a candidate that
reproduces a built-in loss reproduces TRL's training exactly (tests/test_trl_agreement.py).

The trainer knows nothing about individual losses. A candidate that raises or returns the wrong shape
ends the run with status `error`; a non-finite loss ends it with status `diverged`; neither raises out of
`train_candidate`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import datasets
import torch
import transformers
import trl.trainer.dpo_trainer as trl_dpo
from accelerate.utils import is_peft_model
from datasets import Dataset
from pydantic import BaseModel, Field
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl.trainer.dpo_config import DPOConfig
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.utils import add_fused_lm_head

from targets.dpo.candidate import CandidateLoss, LossContext, format_candidate_traceback
from targets.dpo.guard import StateTampered, call_on_leaves, surrogate

TOKENIZED_COLUMNS = frozenset({"prompt_ids", "chosen_ids", "rejected_ids"})
REF_COLUMNS = frozenset({"ref_chosen_logps", "ref_rejected_logps"})
_NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})
REFCACHE_INFO_KEY = "disco_refcache"
"""Key of the JSON that `prepare_preference_dataset` stores in `dataset.info.description`."""


class DPOTrainConfig(BaseModel):
    """How one candidate is trained. Defaults suit a tiny random or SFT model on a CPU."""

    beta: float = 0.1
    """β of the DPO family: the candidate reads it as `self.beta`."""
    label_smoothing: float = 0.0
    """ε of robust/conservative DPO: the candidate reads it as `self.label_smoothing`."""
    candidate_params: dict[str, float] = Field(default_factory=dict)
    """Extra hyperparameters a candidate may read as `self.<name>` (e.g. a temperature)."""
    learning_rate: float = 5e-4
    """TRL's default (1e-6) is for billion-parameter models; a tiny model barely moves with it."""
    per_device_train_batch_size: int = 8
    """Preference pairs per step (the forward batch is twice this: chosen rows, then rejected)."""
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1
    """When positive, overrides `num_train_epochs`."""
    seed: int = 0
    """Seeds the model init of PEFT adapters, the data order (`data_seed`) and dropout."""
    max_length: int | None = 128
    """Prompt+completion tokens kept per sequence; must equal the value the data set was prepared with."""
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    """Fraction of the steps spent warming up (transformers 5 takes it as a float `warmup_steps` < 1)."""
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    bf16: bool | None = None
    """Mixed precision; None means on for CUDA, off on CPU (TRL defaults to True, which CPUs run slowly)."""
    gradient_checkpointing: bool = False
    """Sent as `activation_checkpointing`: TRL defaults it on; `gradient_checkpointing` is deprecated."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` takes CUDA when it is available."""
    logging_steps: int = 10
    """Steps between two entries of the loss history (each entry costs one device sync)."""

    def resolved_device(self) -> str:
        """The device training will use; raises a one-sentence error when CUDA is asked for but absent."""
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was requested but no CUDA GPU is available on this machine.")
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def to_dpo_config(self, output_dir: str) -> DPOConfig:
        """A DPOConfig that trains quietly, saves nothing and reads precomputed reference log-probs."""
        device = self.resolved_device()
        on_cuda = device == "cuda"
        return DPOConfig(
            output_dir=output_dir,
            beta=self.beta,
            label_smoothing=self.label_smoothing,
            learning_rate=self.learning_rate,
            per_device_train_batch_size=self.per_device_train_batch_size,
            per_device_eval_batch_size=self.per_device_train_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            num_train_epochs=self.num_train_epochs,
            max_steps=self.max_steps,
            seed=self.seed,
            data_seed=self.seed,
            max_length=self.max_length,
            lr_scheduler_type=self.lr_scheduler_type,
            warmup_steps=self.warmup_ratio,
            weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm,
            bf16=on_cuda if self.bf16 is None else (self.bf16 and on_cuda),
            activation_checkpointing=self.gradient_checkpointing,
            use_cpu=not on_cuda,
            precompute_ref_log_probs=True,
            logging_steps=self.logging_steps,
            # The divergence check already syncs once per step; this filter would sync again.
            logging_nan_inf_filter=False,
            disable_tqdm=True,
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            dataloader_num_workers=0,
            dataloader_pin_memory=on_cuda,
        )


class TrainOutcome(BaseModel):
    """What one training run produced; a failed candidate is data here, never an exception."""

    status: Literal["ok", "diverged", "error"]
    reason: str | None = None
    """One sentence for `diverged` and `error`."""
    traceback: str | None = None
    """The candidate's own frames (for `error` raised by its code)."""
    failed_step: int | None = None
    """1-based optimiser step at which the loss went non-finite or the candidate failed."""
    steps: int = 0
    """Optimiser steps completed."""
    seconds: float = 0.0
    """Wall time of the training loop (excludes building the trainer)."""
    setup_seconds: float = 0.0
    """Wall time of building the trainer (TRL patches the model, builds the accelerator)."""
    steps_per_second: float = 0.0
    final_loss: float | None = None
    loss_history: list[float] = Field(default_factory=list)
    """Mean loss over each logging window, in order."""
    margin_history: list[float] = Field(default_factory=list)
    """Mean reward margin β·[(log π_c − log π_ref,c) − (log π_r − log π_ref,r)] per logging window."""
    eval_metrics: dict[str, float] = Field(default_factory=dict)
    """`eval_loss`, `eval_rewards/margins`, `eval_rewards/accuracies` when an eval split was given."""


class CandidateFailure(Exception):
    """The candidate raised while computing its loss, or returned something that is not (B,) losses."""

    def __init__(self, message: str, step: int, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.cause = cause


class Diverged(Exception):
    """The loss or its gradient became non-finite; raised before the optimiser step, so the weights keep
    their last finite values."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason


class _LogAtLastStep(TrainerCallback):
    """Force a log entry at the final step, so `final_loss` is the loss at the end of training."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control


@contextlib.contextmanager
def preset_reference_hash(value: str | None) -> Iterator[None]:
    """Make TRL's hash of the reference weights return `value` while a DPOTrainer is built.

    With `precompute_ref_log_probs=True`, `DPOTrainer.__init__` hashes the full state dict on the CPU
    (seconds for a 1B model) only to key its own reference cache. When the data set already carries
    reference log-probs the hash is never read, and the reference cache has hashed the weights already.
    """
    if value is None:
        yield
        return
    namespace = trl_dpo.__dict__  # the globals DPOTrainer.__init__ looks `hash_module` up in
    original = namespace["hash_module"]
    namespace["hash_module"] = lambda module: value
    try:
        yield
    finally:
        namespace["hash_module"] = original


def _base_model(model: Any) -> PreTrainedModel:
    """The transformers model of the policy: PEFT's base model when it is a PeftModel (peft is optional,
    so its types are not known here)."""
    return model.get_base_model() if is_peft_model(model) else model


def _as_module(model: object) -> torch.nn.Module:
    """A trainer's model once the trainer is built. transformers types `model` and `ref_model` as
    optional, and FSDP2's wrapper as a mixin; what they hold then is a module."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the trainer's model is a {type(model).__name__}, not a torch module")
    return model


def _has_columns(dataset: Any, columns: frozenset[str]) -> bool:
    return isinstance(dataset, Dataset) and columns <= set(dataset.column_names)


class CandidateDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is a candidate's per-example losses, averaged over the batch.

    Differences from the stock trainer, all for speed: a data set that is already tokenized and carries
    reference log-probs is used as is; the fused LM head computes log-probs only (TRL also computes entropy,
    mean logits and top-1 hits for its metrics); metrics stay on the device until a log step.
    """

    def __init__(
        self, *args: Any, candidate: CandidateLoss, loss_context: LossContext | None = None, **kwargs: Any
    ):
        self.candidate = candidate
        train_dataset = kwargs.get("train_dataset")
        eval_dataset = kwargs.get("eval_dataset")
        precomputed = _has_columns(train_dataset, REF_COLUMNS) and (
            eval_dataset is None or _has_columns(eval_dataset, REF_COLUMNS)
        )
        with preset_reference_hash("precomputed-by-disco" if precomputed else None):
            super().__init__(*args, **kwargs)
        self.loss_context = loss_context or LossContext(beta=self.beta, label_smoothing=self.label_smoothing)
        # Re-patch the policy's fused head to compute log-probs only: one vocab-wide pass instead of four.
        base = _base_model(self.model)
        unpatch_fused_head(base)
        add_fused_lm_head(base)
        self._disco_stats: list[torch.Tensor] = []
        self._step_losses: list[torch.Tensor] = []
        self.add_callback(_LogAtLastStep())
        # With tqdm disabled, transformers prints every log dict to stdout instead.
        self.remove_callback(PrinterCallback)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        # TRL 1.16 re-tokenizes unconditionally; a prepared data set would be tokenized twice.
        if _has_columns(dataset, TOKENIZED_COLUMNS):
            return dataset
        return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    def _precompute_ref_logps(self, dataset, name, batch_size):
        if _has_columns(dataset, REF_COLUMNS):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _reference_for_forward(self) -> torch.nn.Module:
        # With PEFT and no reference model, TRL's compute_ref_log_probs disables the adapter on the policy.
        return _as_module(self.ref_model if self.ref_model is not None else self.model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        completion_mask = inputs["completion_mask"]  # (2B, T): chosen rows first, right-padded
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = completion_mask.size(1) - 1
        # (2B, T-1) per-token log-probs, 0 off the completion; prompt-learning PEFT prepends virtual tokens
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)  # (2B,)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)  # (B,), (B,)
        if "ref_chosen_logps" in inputs:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(
                self._reference_for_forward(), inputs
            )

        step = self.state.global_step + 1
        # The candidate sees detached leaves only: no autograd path reaches a parameter (targets.dpo.guard).
        try:
            losses, *leaves = call_on_leaves(
                self.candidate, self.loss_context, chosen_logps, rejected_logps, ref_chosen_logps,
                ref_rejected_logps,
            )  # fmt: skip
        except StateTampered as exc:
            raise CandidateFailure(str(exc), step, None) from exc
        except Exception as exc:  # model-written code: any exception is the candidate's to fix
            raise CandidateFailure(f"the candidate raised {type(exc).__name__}: {exc}", step, exc) from exc
        check_losses(losses, chosen_logps.shape[0], step)
        loss = losses.mean()
        if loss.requires_grad:
            try:
                loss = surrogate(loss, (leaves[0], leaves[1]), (chosen_logps, rejected_logps))
            except StateTampered as exc:
                raise CandidateFailure(str(exc), step, None) from exc
            except Exception as exc:  # the backward of the candidate's own graph
                raise CandidateFailure(
                    f"the candidate's gradient raised {type(exc).__name__}: {exc}", step, exc
                ) from exc
        if model.training:
            # Checked once per optimiser step, with the gradient norm, in _get_grad_norm.
            self._step_losses.append(losses.detach())

        with torch.no_grad():
            # Eqn (7) of the DPO paper: implicit reward margin β·[(π_c − ref_c) − (π_r − ref_r)], (B,)
            margins = self.beta * ((chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps))
            self._disco_stats.append(
                torch.stack([loss.detach().float(), margins.float().mean(), (margins > 0).float().mean()])
            )
        if return_outputs:
            return loss, outputs
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        """The divergence check, between backward and the optimiser step, with one device sync.

        A non-finite loss, or a finite loss with a non-finite gradient (e.g. `torch.where` over a NaN
        branch), stops training before the optimiser touches the weights: they keep their last finite values.
        """
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        if not self._step_losses:  # compute_loss was bypassed (e.g. a subclass's training_step)
            return grad_norm
        losses = torch.cat(self._step_losses)  # (B·accumulation,)
        self._step_losses.clear()
        norm = torch.as_tensor(grad_norm, dtype=torch.float32).to(losses.device)
        if not bool(torch.isfinite(losses).all() & torch.isfinite(norm)):
            step = self.state.global_step + 1
            raise Diverged(step, divergence_reason(losses, norm.item(), step))
        return grad_norm

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean margin and accuracy since the last log, with one device sync."""
        if self._disco_stats:
            _, margin, accuracy = torch.stack(self._disco_stats).mean(dim=0).tolist()
            self._disco_stats.clear()
            prefix = "" if _as_module(self.model).training else "eval_"
            logs[f"{prefix}rewards/margins"] = margin
            logs[f"{prefix}rewards/accuracies"] = accuracy
        super().log(logs, start_time)


def check_losses(losses: Any, batch_size: int, step: int) -> None:
    """Raise a CandidateFailure saying what is wrong unless `losses` is a float tensor of shape (B,)."""
    if not isinstance(losses, torch.Tensor):
        raise CandidateFailure(
            f"the candidate returned {type(losses).__name__}; expected a torch.Tensor of per-example losses "
            f"of shape ({batch_size},)",
            step,
        )
    if tuple(losses.shape) != (batch_size,):
        raise CandidateFailure(
            f"the candidate returned losses of shape {tuple(losses.shape)}; expected ({batch_size},), "
            "one loss per preference pair (do not reduce over the batch, do not keep a trailing dimension)",
            step,
        )
    if not losses.is_floating_point():
        raise CandidateFailure(
            f"the candidate returned losses of dtype {losses.dtype}; expected a float tensor", step
        )
    if not losses.requires_grad and torch.is_grad_enabled():
        raise CandidateFailure(
            "the candidate's losses do not depend on the policy log-probs (no gradient flows back)", step
        )


def divergence_reason(losses: torch.Tensor, grad_norm: float, step: int) -> str:
    """One sentence: what went non-finite (loss or gradient) and for how many pairs."""
    finite = torch.isfinite(losses)
    if bool(finite.all()):
        return (
            f"the gradient became non-finite at step {step} (norm {grad_norm}) although the loss was finite"
        )
    kinds = sorted(
        {"nan" if math.isnan(v) else ("+inf" if v > 0 else "-inf") for v in losses[~finite].tolist()}
    )
    return (
        f"the loss became non-finite at step {step}: {int((~finite).sum())} of {losses.numel()} per-example "
        f"losses were {'/'.join(kinds)}"
    )


def unpatch_fused_head(model: torch.nn.Module) -> None:
    """Remove TRL's fused-LM-head patch, so the model's forward is its class's again.

    TRL stores the patched forward on the instance; a `copy.deepcopy` of a patched model keeps a closure that
    calls the ORIGINAL model's forward for plain calls, so a caller that copies the trained policy would
    silently sample from another model's weights.
    """
    patched = model.__dict__.get("forward")
    if patched is not None and hasattr(getattr(patched, "__func__", None), "__wrapped__"):
        del model.__dict__["forward"]


def quiet_hf() -> None:
    """No progress bars or info logs from datasets / transformers / TRL (called by each entry point)."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights" bars of from_pretrained
    logging.getLogger("trl").setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_trl() -> Iterator[None]:
    """Silence what `quiet_hf` cannot: TRL's reference-log-prob tqdm (read from TQDM_DISABLE) and the
    deprecation warnings TRL 1.16 triggers in transformers 5 (`is_gradient_checkpointing`)."""
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
            yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous


def check_prepared(prepared: Dataset, max_length: int | None) -> None:
    """One-sentence errors for a data set that was not prepared, or prepared for another `max_length`."""
    missing = sorted((TOKENIZED_COLUMNS | REF_COLUMNS) - set(prepared.column_names))
    if missing:
        raise ValueError(
            f"the data set lacks {', '.join(missing)}: prepare it with "
            "targets.dpo.refcache.prepare_preference_dataset first"
        )
    info = _refcache_info(prepared)
    if info is not None and info.get("max_length") != max_length:
        raise ValueError(
            f"the data set's reference log-probs were computed with max_length={info.get('max_length')}, "
            f"but training uses max_length={max_length}; prepare it again with the same max_length"
        )


def _refcache_info(dataset: Dataset) -> dict[str, Any] | None:
    try:
        return json.loads(dataset.info.description or "").get(REFCACHE_INFO_KEY)
    except (ValueError, AttributeError):
        return None


def train_candidate(
    candidate: CandidateLoss,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prepared: Dataset,
    config: DPOTrainConfig,
    *,
    eval_dataset: Dataset | None = None,
    output_dir: str | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> TrainOutcome:
    """Train `model` in place with the candidate's loss; the caller keeps the model to evaluate it.

    `prepared` (and `eval_dataset`) come from `prepare_preference_dataset`: tokenized, with reference
    log-probs, so no reference model is needed here. On return the model is in eval mode with its plain
    forward (TRL's patch removed). Candidate failures and divergence are reported in the outcome; errors of
    the caller's making (unprepared data, no GPU) raise ValueError / RuntimeError with one sentence.
    `callbacks` see every log entry as it happens (a job streams its metrics through one; one may also
    stop training early by setting `control.should_training_stop`).
    """
    quiet_hf()
    check_prepared(prepared, config.max_length)
    if eval_dataset is not None:
        check_prepared(eval_dataset, config.max_length)
    context = LossContext(
        beta=config.beta, label_smoothing=config.label_smoothing, extra=dict(config.candidate_params)
    )
    with contextlib.ExitStack() as stack:
        out = output_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="disco-dpo-"))
        t0 = time.perf_counter()
        trainer = CandidateDPOTrainer(
            model=model,
            args=config.to_dpo_config(out),
            train_dataset=prepared,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            candidate=candidate,
            loss_context=context,
            callbacks=callbacks,
        )
        setup_seconds = time.perf_counter() - t0
        status: Literal["ok", "diverged", "error"] = "ok"
        reason = tb = None
        failed_step = None
        eval_metrics: dict[str, float] = {}
        seconds = 0.0
        t1 = time.perf_counter()
        try:
            try:
                with quiet_trl():
                    trainer.train()
            finally:
                seconds = time.perf_counter() - t1
            if eval_dataset is not None:
                with quiet_trl():
                    metrics = trainer.evaluate()
                eval_metrics = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        except Diverged as exc:
            status, reason, failed_step = "diverged", exc.reason, exc.step
        except CandidateFailure as exc:
            status, reason, failed_step = "error", exc.message, exc.step
            tb = format_candidate_traceback(exc.cause, candidate.code) if exc.cause is not None else None
        finally:
            unpatch_fused_head(model)
            model.eval()
    steps = trainer.state.global_step
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    losses = [float(entry["loss"]) for entry in history]
    return TrainOutcome(
        status=status,
        reason=reason,
        traceback=tb,
        failed_step=failed_step,
        steps=steps,
        seconds=seconds,
        setup_seconds=setup_seconds,
        steps_per_second=steps / seconds if seconds > 0 else 0.0,
        final_loss=losses[-1] if losses and status == "ok" else None,
        loss_history=losses,
        margin_history=[float(e["rewards/margins"]) for e in history if "rewards/margins" in e],
        eval_metrics=eval_metrics,
    )
