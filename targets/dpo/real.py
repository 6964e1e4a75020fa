"""The expensive evaluator: a candidate loss trained on a real model and a real preference data set.

Same trainer as the cheap evaluator (`train_candidate`), on CUDA with bf16 autocast and SDPA attention,
optional activation checkpointing and LoRA. The reference is the model as loaded: its log-probs are
computed once (`prepare_preference_dataset`, cached on disk) before any candidate code runs.

Trust (issue 15): `run_real_dpo` runs in a trusted process and never runs candidate code itself. It
loads the data and the reference, prepares the reference log-probs (so it is the only writer of the
cache), then forks a jailed child (`sandbox.forked.run_forked`) that compiles the candidate, trains, and
writes the trainable weights (safetensors) and a small report into its scratch dir — the only place it
can write. The trusted process validates the weights (names, shapes, dtypes, finite, moved), loads them
into the reference architecture and scores the held-out pairs itself: the policy's log-probs by TRL's own
reference code path, against the cached reference log-probs, with DPO's implicit reward — never the
candidate's loss. What the child reports (loss history, steps, speed) is informational.

CUDA is not fork-safe, so on CUDA the trusted process never initialises it before a fork: a trusted,
unjailed fork computes the reference log-probs on the GPU, the jailed child loads the model itself from
read-only paths, and the trusted process loads it on the GPU only after the child has exited. On the
CPU the child shares the loaded model copy-on-write.

Errors a person can cause — a missing model path, a data set without the needed columns, no GPU when one
is requested, LoRA without `peft` — raise `RealDPOError` with one sentence. A child that ends without a
usable result raises `ChildFailed`, which says how.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import torch
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase, TrainerCallback

from sandbox.fork import fork_without_inherited_garbage
from targets.dpo.refcache import compute_reference_logps, prepare_preference_dataset
from targets.dpo.trainer import DPOTrainConfig, TrainOutcome, quiet_hf

FILE_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
REPORT = "report.json"
WEIGHTS = "weights.safetensors"
MAX_REPORT_BYTES = 4 << 20
REPORTED = frozenset(
    {"status", "reason", "traceback", "failed_step", "steps", "seconds", "setup_seconds", "loss_history",
     "margin_history"}
)  # fmt: skip
"""The fields of the child's TrainOutcome that go into its report."""
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
SCORING_KEY = "disco-trained-policy"
"""Stands in for TRL's hash of the trained policy's weights, which nothing reads when scoring."""


class RealDPOError(Exception):
    """A problem with the spec or the machine, told in one sentence."""


class ChildFailed(Exception):
    """The jailed training child ended without a result the trusted side could use.

    `kind`: `refused` (the host refused the jail), `timeout`, `killed` (by `signal`), `crash` (it raised
    outside the candidate's loss, or left no readable report), `rejected` (its weights failed validation).
    `detail` is the child's untrusted traceback or output tail, for the log only."""

    def __init__(
        self,
        kind: Literal["refused", "timeout", "killed", "crash", "rejected"],
        message: str,
        detail: str | None = None,
        signal: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail
        self.signal = signal


class LoRASpec(BaseModel):
    """LoRA adapters (needs the `gpu` extra: `pip install -e '.[gpu]'`)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"
    """Never include the LM head: TRL computes log-probs from `lm_head.weight` directly."""


def _default_train() -> DPOTrainConfig:
    return DPOTrainConfig(
        device="cuda", learning_rate=5e-7, per_device_train_batch_size=8, max_length=512, logging_steps=10
    )


class RealDPOSpec(BaseModel):
    """One real training run: which model, which data, how to train."""

    model: str
    """Local directory (save_pretrained layout) or hub id (offline: it must already be in the HF cache)."""
    dataset: str
    """Local .json/.jsonl/.parquet/.csv file, a save_to_disk directory, or a hub id."""
    split: str = "train"
    eval_fraction: float = 0.05
    """Held-out share of the pairs, scored after training (reward margins and accuracy)."""
    max_train_pairs: int | None = None
    max_eval_pairs: int | None = 512
    train: DPOTrainConfig = Field(default_factory=_default_train)
    """Hyperparameters; the default learning rate (5e-7) is the DPO paper's for full fine-tuning."""
    weights_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """`auto`: float32 master weights for full fine-tuning (bf16 weights cannot take a 5e-7 step: the
    update is far below one bf16 ulp), bfloat16 for a frozen LoRA base. Compute runs in bf16 autocast."""
    attn_implementation: str = "sdpa"
    lora: LoRASpec | None = None
    ref_batch_size: int = 16
    cache_dir: Path | None = None
    """Where reference log-probs are cached; None computes them every run."""


class RealDPOResult(BaseModel):
    """Throughput and quality figures of one run; `outcome` holds the status and loss history.

    The eval figures are computed by the trusted process from the weights the child handed back; the
    outcome's loss history, steps and speed are what the child reported (informational)."""

    outcome: TrainOutcome
    device: str
    train_pairs: int
    eval_pairs: int
    steps_per_second: float
    tokens_per_second: float
    """Non-padding tokens (prompt+chosen and prompt+rejected, after truncation) per second of training."""
    peak_gpu_memory_gib: float | None = None
    final_loss: float | None = None
    eval_reward_margin: float | None = None
    """Mean β·[(log π_c − log π_ref,c) − (log π_r − log π_ref,r)] over the held-out pairs."""
    eval_reward_accuracy: float | None = None
    """Share of held-out pairs whose implicit reward margin is positive."""
    stopped: str | None = None
    """Why a training callback stopped the run early (e.g. a hopeless loss), as the child reported it."""
    load_seconds: float
    prepare_seconds: float
    score_seconds: float = 0.0


class ChildReport(BaseModel):
    """What the jailed child says about its run: untrusted, so bounded, and never a score."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    status: Literal["ok", "diverged", "error", "crash"]
    """`crash`: something outside the candidate's loss raised (e.g. CUDA out of memory in a forward)."""
    reason: str | None = Field(default=None, max_length=4000)
    traceback: str | None = Field(default=None, max_length=16000)
    failed_step: int | None = Field(default=None, ge=0)
    steps: int = Field(default=0, ge=0)
    seconds: float = Field(default=0.0, ge=0.0)
    setup_seconds: float = Field(default=0.0, ge=0.0)
    loss_history: list[float] = Field(default_factory=list, max_length=100_000)
    margin_history: list[float] = Field(default_factory=list, max_length=100_000)
    stopped: str | None = Field(default=None, max_length=1000)
    peak_gpu_memory_gib: float | None = Field(default=None, ge=0.0)


class RefOptions(TypedDict):
    """What `prepare_preference_dataset` is given besides the model, the pairs and the device."""

    cache_dir: Path | None
    max_length: int | None
    batch_size: int
    bf16: bool


@dataclass
class Prepared:
    """What the trusted process builds before any candidate runs (lives in memory; never crosses a
    boundary except by fork, copy-on-write)."""

    device: str
    bf16: bool
    tokenizer: PreTrainedTokenizerBase
    eval_raw: Dataset
    train: Dataset
    """Tokenized, with reference log-probs (memory-mapped from the cache when there is one)."""
    eval: Dataset
    model: Any | None
    """The reference model on the CPU; None on CUDA (the child loads its own, after the fork)."""
    readable: list[Path]
    """What the child may need to read besides the interpreter and the project (model, data files)."""
    weights_mb: int | None
    """An upper bound of the size of the weights file the child writes (None: unknown)."""
    load_seconds: float
    prepare_seconds: float


def load_preference_data(source: str, split: str = "train") -> Dataset:
    """A local file, a save_to_disk directory or a hub id, as one Dataset."""
    path = Path(source).expanduser()
    try:
        if path.suffix.lower() in FILE_FORMATS:
            if not path.is_file():
                raise RealDPOError(f"the data set file {source} does not exist.")
            return load_dataset(FILE_FORMATS[path.suffix.lower()], data_files=str(path), split="train")
        if path.is_dir() and any((path / f).exists() for f in ("state.json", "dataset_dict.json")):
            loaded = load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, DatasetDict) else loaded
        return load_dataset(source, split=split)
    except RealDPOError:
        raise
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise RealDPOError(
            f"could not load the data set {source!r} ({type(exc).__name__}): give a .json/.jsonl/.parquet/"
            ".csv file, a save_to_disk directory, or a hub id that is in the local cache."
        ) from exc


def check_columns(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Keep prompt/chosen/rejected; one-sentence error unless they are in a format TRL reads."""
    columns = set(dataset.column_names)
    if not {"chosen", "rejected"} <= columns:
        raise RealDPOError(
            f"the data set has columns {sorted(columns)}; it needs 'chosen' and 'rejected' (plus 'prompt' "
            "for plain strings)."
        )
    chat = isinstance(dataset[0]["chosen"], list)
    if not chat and "prompt" not in columns:
        raise RealDPOError("the data set has string 'chosen'/'rejected' columns but no 'prompt' column.")
    if chat and not tokenizer.chat_template:
        raise RealDPOError("the data set is in chat format but the tokenizer has no chat template.")
    keep = [c for c in ("prompt", "chosen", "rejected") if c in columns]
    return dataset.select_columns(keep)


def _model_source(spec: RealDPOSpec) -> tuple[str, bool]:
    """(what from_pretrained is given, whether it is a local directory)."""
    path = Path(spec.model).expanduser()
    looks_local = spec.model.startswith((".", "/", "~")) or path.exists()
    if looks_local and not (path / "config.json").exists():
        raise RealDPOError(f"the model path {spec.model} does not exist or has no config.json.")
    return (str(path.resolve()) if looks_local else spec.model), looks_local


def load_tokenizer(spec: RealDPOSpec) -> PreTrainedTokenizerBase:
    source, _ = _model_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise RealDPOError(
            f"could not load the model {spec.model!r}: it is neither a local directory nor in the local "
            "Hugging Face cache."
        ) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: RealDPOSpec, device: str) -> Any:
    """The model as saved, on `device`, in the weights dtype the spec asks for."""
    source, _ = _model_source(spec)
    dtype = spec.weights_dtype
    if dtype == "auto":
        dtype = "bfloat16" if spec.lora is not None and device == "cuda" else "float32"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, dtype), attn_implementation=spec.attn_implementation
        )
    except OSError as exc:
        raise RealDPOError(
            f"could not load the model {spec.model!r}: it is neither a local directory nor in the local "
            "Hugging Face cache."
        ) from exc
    # transformers wraps `to` with functools.wraps(torch.nn.Module.to), which its typing reads as a call
    # with no `self`: typed as the Module it is, the call is PreTrainedModel.to all the same.
    return cast(torch.nn.Module, model).to(device)


def load_model_and_tokenizer(spec: RealDPOSpec, device: str) -> tuple[Any, PreTrainedTokenizerBase]:
    return load_model(spec, device), load_tokenizer(spec)


def require_peft() -> Any:
    """The peft module, or a one-sentence error naming the extra that provides it."""
    try:  # by name: peft is in the gpu extra, which the type checker's environment may lack
        return importlib.import_module("peft")
    except ImportError as exc:
        raise RealDPOError(
            "LoRA needs the `peft` package: install the gpu extra, pip install -e '.[gpu]'."
        ) from exc


def apply_lora(model: Any, lora: LoRASpec, seed: int) -> Any:
    """Wrap the model with fresh LoRA adapters, initialised from `seed` (the trusted side rebuilds the same
    initial adapters to check that training moved them); TRL uses the adapter-disabled base as reference."""
    peft = require_peft()
    config = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
    )
    torch.manual_seed(seed)
    return peft.get_peft_model(model, config)


def tokens_per_pair(prepared: Dataset, max_length: int | None) -> float:
    """Mean non-padding tokens the trainer sees per pair (both sequences, after truncation)."""
    cap = max_length or 10**9
    total = sum(
        min(len(p) + len(c), cap) + min(len(p) + len(r), cap)
        for p, c, r in zip(
            prepared["prompt_ids"], prepared["chosen_ids"], prepared["rejected_ids"], strict=True
        )
    )
    return total / max(len(prepared), 1)


def scratch_dir(workdir: Path) -> Path:
    """The one directory the jailed child may write: its report, weights, log and metrics stream."""
    return workdir / "scratch"


# ---------------------------------------------------------------- trusted: before any candidate runs


def prepare(spec: RealDPOSpec, workdir: Path) -> Prepared:
    """Load the data and the reference, split, and prepare the reference log-probs (cached)."""
    # `torch.cuda.is_available()` would otherwise initialise the CUDA driver in this process, and a CUDA
    # child forked after that fails: NVML answers the same question without touching CUDA.
    os.environ.setdefault(NVML_CHECK, "1")
    device = _resolved(spec)
    if spec.lora is not None:
        require_peft()  # fail before minutes of loading and scoring
    bf16 = spec.train.bf16 if spec.train.bf16 is not None else device == "cuda"
    t0 = time.perf_counter()
    source, local = _model_source(spec)
    tokenizer = load_tokenizer(spec)
    model = load_model(spec, device) if device == "cpu" else None
    data = check_columns(load_preference_data(spec.dataset, spec.split), tokenizer)
    load_seconds = time.perf_counter() - t0

    split = data.train_test_split(test_size=spec.eval_fraction, seed=spec.train.seed)
    train_raw, eval_raw = split["train"], split["test"]
    if spec.max_train_pairs is not None:
        train_raw = train_raw.select(range(min(spec.max_train_pairs, len(train_raw))))
    if spec.max_eval_pairs is not None:
        eval_raw = eval_raw.select(range(min(spec.max_eval_pairs, len(eval_raw))))

    t0 = time.perf_counter()
    options = RefOptions(
        cache_dir=spec.cache_dir, max_length=spec.train.max_length, batch_size=spec.ref_batch_size, bf16=bf16
    )
    if model is not None:
        # The model as loaded is the reference: score the pairs with it before anything trains it.
        train = prepare_preference_dataset(model, tokenizer, train_raw, device="cpu", **options)
        evals = prepare_preference_dataset(model, tokenizer, eval_raw, device="cpu", **options)
    else:
        train, evals = _prepare_in_trusted_fork(spec, tokenizer, train_raw, eval_raw, workdir, options)
    readable = [Path(source)] if local else [_hub_cache()]
    readable += [Path(f["filename"]).parent for d in (train, evals) for f in d.cache_files]
    return Prepared(
        device=device,
        bf16=bf16,
        tokenizer=tokenizer,
        eval_raw=eval_raw,
        train=train,
        eval=evals,
        model=model,
        readable=sorted(set(readable)),
        weights_mb=_weights_mb(model, Path(source) if local else None),
        load_seconds=load_seconds,
        prepare_seconds=time.perf_counter() - t0,
    )


def _resolved(spec: RealDPOSpec) -> str:
    try:
        return spec.train.resolved_device()
    except RuntimeError as exc:
        raise RealDPOError(str(exc)) from exc


def _weights_mb(model: Any | None, local: Path | None) -> int | None:
    """An upper bound of the trained weights' file size in MB: the loaded model's parameters, else twice
    the checkpoint's files (bf16 on disk, float32 trained); None when unknown (a hub id on CUDA)."""
    if model is not None:
        size = sum(p.numel() * p.element_size() for p in model.parameters())
    elif local is not None:
        files = [f for f in local.iterdir() if f.suffix in (".safetensors", ".bin", ".pt")]
        size = 2 * sum(f.stat().st_size for f in files)
    else:
        return None
    return (size >> 20) + 64


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _prepare_in_trusted_fork(
    spec: RealDPOSpec,
    tokenizer: PreTrainedTokenizerBase,
    train_raw: Dataset,
    eval_raw: Dataset,
    workdir: Path,
    options: RefOptions,
) -> tuple[Dataset, Dataset]:
    """Reference log-probs on the GPU, computed by a fork that runs only trusted code, so that this process
    stays free of CUDA until the jailed child has forked. Returns the prepared sets, memory-mapped."""
    out = workdir / "prepared"
    out.mkdir(parents=True, exist_ok=True)
    answer = out / "answer.json"
    parent = os.getpid()
    pid = fork_without_inherited_garbage()
    if pid == 0:  # the trusted preparation child: never returns
        code = 1
        try:
            _die_with(parent)
            try:
                model = load_model(spec, "cuda")
                dirs = {}
                for name, raw in (("train", train_raw), ("eval", eval_raw)):
                    prepared = prepare_preference_dataset(model, tokenizer, raw, device="cuda", **options)
                    if not prepared.cache_files:  # no cache: keep it in the job's trusted folder
                        prepared.save_to_disk(str(out / name))
                        dirs[name] = str(out / name)
                    else:
                        dirs[name] = str(Path(prepared.cache_files[0]["filename"]).parent)
                body: dict[str, Any] = {"dirs": dirs}
            except RealDPOError as exc:
                body = {"user_error": str(exc)}
            except Exception as exc:  # classified by the caller (out of memory or a crash)
                body = {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()}
            answer.write_text(json.dumps(body))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        body = json.loads(answer.read_text())
    except (OSError, ValueError):
        code = os.waitstatus_to_exitcode(status)
        raise ChildFailed(
            "killed" if code < 0 else "crash",
            f"the process computing the reference log-probs ended ({_how(code)}) without a result",
            signal=-code if code < 0 else None,
        ) from None
    if "user_error" in body:
        raise RealDPOError(body["user_error"])
    if "error" in body:
        raise ChildFailed(
            "crash", f"computing the reference log-probs failed: {body['error']}", body["traceback"]
        )
    return Dataset.load_from_disk(body["dirs"]["train"]), Dataset.load_from_disk(body["dirs"]["eval"])


def _die_with(parent: int) -> None:
    """SIGKILL this fork when the trusted process dies: nothing may hold a GPU unwatched."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _how(code: int | None) -> str:
    if code is None:
        return "killed"
    return f"signal {-code}" if code < 0 else f"exit {code}"


# ---------------------------------------------------------------- the jailed child


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    """The parameters training changes, one name per tensor (tied weights appear once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def train_in_child(
    spec: RealDPOSpec, prepared: Prepared, code: str, callbacks: list[TrainerCallback], scratch: Path
) -> None:
    """In the jailed child: compile the candidate, train, write the trainable weights and the report.

    Everything here may be subverted by the candidate; the trusted side believes none of it but the
    weights, and those only after checking them."""
    from safetensors.torch import save_file

    from targets.dpo.candidate import CandidateError, load_candidate
    from targets.dpo.trainer import train_candidate

    tmp = scratch / "tmp"
    tmp.mkdir(exist_ok=True)
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp)
    try:
        try:
            candidate = load_candidate(code)
        except CandidateError as exc:
            report = ChildReport(status="error", reason=f"the candidate does not load: {exc.message}")
        else:
            model = prepared.model if prepared.model is not None else load_model(spec, prepared.device)
            if spec.lora is not None:
                model = apply_lora(model, spec.lora, spec.train.seed)
            cuda = prepared.device == "cuda"
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            outcome = train_candidate(
                candidate, model, prepared.tokenizer, prepared.train, spec.train, callbacks=callbacks
            )
            if outcome.status == "ok":
                weights = {k: v.detach().to("cpu").contiguous() for k, v in _trainable(model).items()}
                save_file(weights, scratch / WEIGHTS)
            stopped = [s for cb in callbacks if (s := getattr(cb, "stopped", None))]
            fields = outcome.model_dump(include=set(REPORTED))
            fields["reason"] = (outcome.reason or "")[:4000] or None
            fields["traceback"] = (outcome.traceback or "")[-16000:] or None
            report = ChildReport(
                **fields,
                stopped=stopped[0][:1000] if stopped else None,
                peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            )
    except Exception as exc:  # outside the candidate's loss: the machine, the trainer, or our bug
        report = ChildReport(
            status="crash",
            reason=f"{type(exc).__name__}: {exc}"[:4000],
            traceback=traceback.format_exc()[-16000:],
        )
    (scratch / REPORT).write_text(report.model_dump_json())


def _jail(prepared: Prepared, scratch: Path, memory_mb: int | None) -> Any:
    from sandbox.jail import JailSpec

    cpu = prepared.device == "cpu"
    options: dict[str, Any] = {} if cpu else {"devices": gpu_device_paths()}
    return JailSpec(
        readonly=prepared.readable,
        writable=[scratch],
        unsafe=os.environ.get("DISCO_UNSAFE_SANDBOX") == "1",
        memory_mb=memory_mb if cpu else None,  # CUDA reserves huge address ranges
        # The trained weights are one file.
        max_file_mb=None if prepared.weights_mb is None else max(1024, prepared.weights_mb),
        **options,
    )


def jail_gives_gpus() -> bool:
    """Whether `sandbox.jail` can hand device nodes to the child (a CUDA child needs /dev/nvidia*)."""
    from sandbox.jail import JailSpec

    return "devices" in JailSpec.model_fields


def gpu_device_paths() -> list[Path]:
    """The device nodes a CUDA child needs: the driver's control nodes and those of the GPUs it was given
    (by UUID in CUDA_VISIBLE_DEVICES, as the job queue sets it), or of every GPU when they cannot be
    matched (e.g. MIG instances)."""
    control = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-caps"]
    minors: dict[str, str] = {}
    for info in Path("/proc/driver/nvidia/gpus").glob("*/information"):
        pairs = (line.split(":", 1) for line in info.read_text().splitlines() if ":" in line)
        fields = {key.strip(): value.strip() for key, value in pairs}  # "GPU UUID:  GPU-…", "Device Minor: 0"
        if "GPU UUID" in fields and "Device Minor" in fields:
            minors[fields["GPU UUID"]] = fields["Device Minor"]
    wanted = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if wanted and all(w in minors for w in wanted):
        gpus = [f"/dev/nvidia{minors[w]}" for w in wanted]
    else:
        gpus = [str(p) for p in Path("/dev").glob("nvidia[0-9]*")]
    return sorted(Path(p) for p in control + gpus if os.path.exists(p))


# ---------------------------------------------------------------- trusted: after the child


def read_report(scratch: Path, outcome: Any) -> ChildReport:
    """The child's report, or ChildFailed saying how the child ended without one."""
    from sandbox.forked import read_untrusted

    try:
        return ChildReport.model_validate_json(read_untrusted(scratch / REPORT, MAX_REPORT_BYTES))
    except (OSError, ValueError, ValidationError):
        pass
    tail = outcome.log_tail[-4000:] or None
    if outcome.refused:
        raise ChildFailed(
            "refused", "the training sandbox was refused by this host: " + outcome.log_tail.strip()[-300:]
        )
    if outcome.timed_out:
        raise ChildFailed(
            "timeout",
            f"training did not finish within its time limit ({outcome.seconds:.0f} s) and was killed",
        )
    if outcome.signal:
        raise ChildFailed(
            "killed", f"the training process was killed by signal {outcome.signal}", tail, outcome.signal
        )
    raise ChildFailed(
        "crash", f"the training process ended (exit {outcome.exit_code}) without a readable report", tail
    )


def load_trained_policy(spec: RealDPOSpec, prepared: Prepared, path: Path) -> Any:
    """The reference architecture with the weights the child handed back, after checking them: the same
    names, shapes and dtypes as the trainable parameters, every value finite, and something moved."""
    from safetensors.torch import load

    from sandbox.forked import read_untrusted

    # On the CPU the reference itself takes the weights: its work is done (its log-probs are prepared).
    model = prepared.model if prepared.model is not None else load_model(spec, prepared.device)
    if spec.lora is not None:
        model = apply_lora(model, spec.lora, spec.train.seed)
    expected = _trainable(model)
    limit = sum(t.numel() * t.element_size() for t in expected.values()) + (1 << 20)
    try:
        weights = load(read_untrusted(path, limit))
    except Exception as exc:  # a missing or malformed file is the child's doing: say so, never crash here
        raise ChildFailed(
            "rejected",
            f"the trained weights were rejected: not a readable safetensors file ({type(exc).__name__})",
        ) from None
    problem = weights_problem(weights, expected)
    if problem:
        raise ChildFailed("rejected", f"the trained weights were rejected: {problem}")
    with torch.no_grad():  # only weights that passed every check touch the model
        for name, tensor in weights.items():
            expected[name].copy_(tensor)
    if spec.lora is not None:
        model = model.merge_and_unload()
    return model.eval()


def weights_problem(weights: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    """What is wrong with weights handed back for the `expected` parameters (None: nothing)."""
    if set(weights) != set(expected):
        odd = sorted(set(weights) ^ set(expected))[:3]
        return f"unexpected or missing tensors {', '.join(odd)}"
    moved = False
    for name, tensor in weights.items():
        param = expected[name]
        if tensor.shape != param.shape or tensor.dtype != param.dtype:
            shown = f"{tuple(tensor.shape)} {tensor.dtype}, expected {tuple(param.shape)} {param.dtype}"
            return f"{name} is {shown}"
        if not bool(torch.isfinite(tensor).all()):
            return f"{name} holds non-finite values"
        moved = moved or not torch.equal(tensor, param.detach().to(tensor.device))
    return None if moved else "they equal the initial ones: training moved nothing"


def score_policy(policy: Any, spec: RealDPOSpec, prepared: Prepared) -> tuple[float, float]:
    """(mean implicit reward margin, share of pairs with a positive one) on the held-out pairs.

    The policy's log-probs come from the code path that computed the reference's (same tokenization,
    rows and precision), so the margin is Eqn (7) of the DPO paper: β·[(π_c − ref_c) − (π_r − ref_r)]."""
    scored = compute_reference_logps(
        policy,
        prepared.tokenizer,
        prepared.eval_raw,
        max_length=spec.train.max_length,
        batch_size=spec.ref_batch_size,
        use_cpu=prepared.device == "cpu",
        bf16=prepared.bf16,
        model_key=SCORING_KEY,
    )
    if scored["chosen_ids"] != prepared.eval["chosen_ids"]:
        raise RuntimeError("the held-out pairs were tokenized differently for the policy and the reference")
    policy_c = torch.tensor(scored["ref_chosen_logps"], dtype=torch.float64)  # (N,)
    policy_r = torch.tensor(scored["ref_rejected_logps"], dtype=torch.float64)
    ref_c = torch.tensor(prepared.eval["ref_chosen_logps"], dtype=torch.float64)
    ref_r = torch.tensor(prepared.eval["ref_rejected_logps"], dtype=torch.float64)
    margins = spec.train.beta * ((policy_c - ref_c) - (policy_r - ref_r))  # (N,)
    return float(margins.mean()), float((margins > 0).double().mean())


# ---------------------------------------------------------------- the whole run


def run_real_dpo(
    spec: RealDPOSpec,
    code: str,
    workdir: Path,
    callbacks: list[TrainerCallback] | None = None,
    timeout_s: float = 7 * 24 * 3600.0,
    memory_mb: int | None = None,
) -> RealDPOResult:
    """Prepare here, train the candidate `code` in a jailed child, score its weights here.

    `workdir` holds the child's scratch dir (`scratch_dir(workdir)`, where `callbacks` should write) and,
    on CUDA without a cache, the prepared data. `callbacks` run in the child (a job streams its metrics
    and stops hopeless runs through them; a callback that stops training says why in `.stopped`).
    `memory_mb` limits the child's address space (CPU only). The caller checks the static policy first.
    """
    from sandbox.forked import run_forked

    quiet_hf()
    os.environ.setdefault(NVML_CHECK, "1")
    if spec.train.device != "cpu" and _resolved(spec) == "cuda" and not jail_gives_gpus():
        raise RealDPOError(
            "GPU jobs cannot run yet: the training jail (sandbox/jail.py) cannot hand a GPU device to the "
            "child that trains the candidate; run the job on the CPU (resources.gpus = 0)."
        )
    # GNU OpenMP is not fork-safe: a child that runs a parallel region after its parent (or an earlier
    # caller in the same process) used a team of threads hangs. So both compute with one thread.
    torch.set_num_threads(1)
    prepared = prepare(spec, workdir)
    if prepared.device == "cuda" and torch.cuda.is_initialized():
        raise RuntimeError(
            "CUDA was initialised before the training child was forked (CUDA is not fork-safe)"
        )
    scratch = scratch_dir(workdir)
    scratch.mkdir(parents=True, exist_ok=True)
    callbacks = list(callbacks or [])

    def child() -> None:
        torch.set_num_threads(1)
        train_in_child(spec, prepared, code, callbacks, scratch)

    outcome = run_forked(
        child,
        _jail(prepared, scratch, memory_mb),
        scratch,
        timeout_s,
    )
    report = read_report(scratch, outcome)
    if report.status == "crash":
        raise ChildFailed("crash", report.reason or "the training process failed", report.traceback)

    t0 = time.perf_counter()
    margin = accuracy = None
    eval_metrics: dict[str, float] = {}
    if report.status == "ok":
        policy = load_trained_policy(spec, prepared, scratch / WEIGHTS)
        margin, accuracy = score_policy(policy, spec, prepared)
        eval_metrics = {"eval_rewards/margins": margin, "eval_rewards/accuracies": accuracy}
    score_seconds = time.perf_counter() - t0

    final = report.loss_history[-1] if report.loss_history and report.status == "ok" else None
    train_outcome = TrainOutcome(
        **report.model_dump(exclude={"stopped", "peak_gpu_memory_gib"}),
        steps_per_second=report.steps / report.seconds if report.seconds > 0 else 0.0,
        final_loss=final,
        eval_metrics=eval_metrics,
    )
    pairs_per_step = spec.train.per_device_train_batch_size * spec.train.gradient_accumulation_steps
    tokens = report.steps * pairs_per_step * tokens_per_pair(prepared.train, spec.train.max_length)
    return RealDPOResult(
        outcome=train_outcome,
        device=prepared.device,
        train_pairs=len(prepared.train),
        eval_pairs=len(prepared.eval),
        steps_per_second=train_outcome.steps_per_second,
        tokens_per_second=tokens / report.seconds if report.seconds > 0 else 0.0,
        peak_gpu_memory_gib=report.peak_gpu_memory_gib,
        final_loss=final,
        eval_reward_margin=margin,
        eval_reward_accuracy=accuracy,
        stopped=report.stopped,
        load_seconds=prepared.load_seconds,
        prepare_seconds=prepared.prepare_seconds,
        score_seconds=score_seconds,
    )
