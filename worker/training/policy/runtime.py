"""The training runtime shared by the four algorithms: models, optimizer, DDP, batching, forwards, resume.

Algorithms (ppo.py, rloo.py, dpo.py, sft.py) only write their loss and loop body; everything about where
tensors live, how gradients are accumulated and averaged across ranks, how data is ordered per step (so a
resumed run replays exactly), and how state is saved lives here.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
import torch.distributed as dist
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from worker.training.activation_checkpointing import enable_activation_checkpointing
from worker.training.devices import frozen, to_device
from worker.training.policy.common import (
    all_reduce_sum,
    dist_active,
    entropy_from_logits,
    logprobs_from_logits,
)
from worker.training.policy.config import PolicyTrainConfig
from worker.training.sampling import (
    Prompt,
    format_prompt,
    pad_token_id,
    position_ids_from_mask,
)


class RewardFn(Protocol):
    """Scores completions: (prompts, completions) -> float tensor of shape (len(completions),)."""

    def __call__(self, prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor: ...


ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]


# --- distributed ----------------------------------------------------------------------------------------


def init_distributed_from_env() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); gloo on CPU, nccl on CUDA."""
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def any_rank(flag: bool) -> bool:
    """True when `flag` is true on any rank (so every rank stops together)."""
    return bool(all_reduce_sum(torch.tensor(float(flag))).item() > 0)


# --- models -------------------------------------------------------------------------------------------


def disable_dropout(model: nn.Module) -> None:
    """RL and DPO need the same function for sampling, old log-probs and training: no dropout anywhere."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


class ValueModel(nn.Module):
    """A transformer backbone with a scalar head giving one value per token."""

    def __init__(self, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Values (batch, seq)."""
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
        )
        values: torch.Tensor = self.head(out.last_hidden_state).squeeze(-1).float()
        return values


def build_value_model(
    reward_model_path: str | Path | None, policy_path: str | Path
) -> tuple[ValueModel, str]:
    """Value model initialised from the reward model (InstructGPT) when it loads as a sequence classifier.

    Otherwise (no reward model, or one in another format) the policy backbone with a zero scalar head.
    Returns the model and a note saying which initialisation was used.
    """
    if reward_model_path is not None:
        try:
            rm_dir = resolve_reward_dir(reward_model_path)
            rm = AutoModelForSequenceClassification.from_pretrained(
                str(rm_dir), dtype=torch.float32, num_labels=1
            )
            head = getattr(rm, "score", None) or getattr(rm, "classifier", None)
            if isinstance(head, nn.Linear) and head.out_features == 1:
                return ValueModel(rm.base_model, head), f"reward model {reward_model_path}"
        except (OSError, ValueError):
            pass
    backbone = AutoModel.from_pretrained(str(policy_path), dtype=torch.float32)
    head = nn.Linear(backbone.config.hidden_size, 1, bias=True)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return ValueModel(backbone, head), f"policy backbone {policy_path}"


def apply_lora(model: PreTrainedModel, config: PolicyTrainConfig) -> PreTrainedModel:
    """Wrap the policy in LoRA adapters (needs the optional `peft` package)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("lora_r > 0 needs the optional 'peft' package (pip install 'prefloop[lora]')") from exc
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )
    # A PeftModel forwards every attribute it lacks to the wrapped model, so callers keep using it as one.
    return cast(PreTrainedModel, get_peft_model(model, lora))


LORA_WEIGHTS_FILE = "adapter_model.safetensors"  # what PeftModel.save_pretrained writes (adapters only)


def load_lora_state(policy: PreTrainedModel, state_dir: str | Path) -> None:
    """Restore the adapter weights a LoRA run saved in its training state (the base weights never change).

    Raises ValueError when the saved adapters do not fit the policy's (another rank or target modules).
    """
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(state_dir) / LORA_WEIGHTS_FILE
    if not path.is_file():
        raise ValueError(f"{state_dir} holds no LoRA adapters ({LORA_WEIGHTS_FILE})")
    try:
        # peft annotates the result as a bare `namedtuple`; it is torch's (missing_keys, unexpected_keys).
        result = cast(tuple[list[str], list[str]], set_peft_model_state_dict(policy, load_file(str(path))))
    except RuntimeError as exc:  # shape mismatch
        raise ValueError(f"the LoRA adapters in {state_dir} do not fit this run: {exc}") from exc
    missing_keys, unexpected_keys = result
    missing = [k for k in missing_keys if "lora_" in k]
    if unexpected_keys or missing:
        raise ValueError(
            f"the LoRA adapters in {state_dir} do not fit this run "
            f"(unexpected {unexpected_keys[:3]}, missing {missing[:3]})"
        )


def load_train_models(
    config: PolicyTrainConfig, policy_path: str | Path, device: torch.device,
    reference_path: str | Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedModel | None]:
    """The trainable policy (fp32 master weights) and the frozen reference: the model at
    `reference_path` (e.g. the SFT version, while the policy starts from a later round), else a frozen
    copy of the policy (None under LoRA: the reference is then the same model with adapters disabled)."""
    policy: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(policy_path), dtype=torch.float32)
    disable_dropout(policy)
    ref: PreTrainedModel | None = None
    separate = reference_path is not None and Path(reference_path).resolve() != Path(policy_path).resolve()
    if separate:
        ref = frozen(AutoModelForCausalLM.from_pretrained(str(reference_path), dtype=torch.float32), device)
    if config.lora_r > 0:
        policy = apply_lora(policy, config)
    elif ref is None:
        ref = frozen(copy.deepcopy(policy), device)
    if config.gradient_checkpointing:
        enable_activation_checkpointing(policy)
        policy.config.use_cache = False
    return to_device(policy, device), ref


@contextlib.contextmanager
def reference_mode(policy: PreTrainedModel, ref: PreTrainedModel | None) -> Iterator[PreTrainedModel]:
    """Yield the model that computes reference log-probs (the frozen copy, or the policy sans adapters)."""
    if ref is not None:
        yield ref
        return
    with policy.disable_adapter():  # type: ignore[operator]  # a PeftModel here, typed as the model it wraps
        yield policy


# --- batching ---------------------------------------------------------------------------------------------


def pack(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[left-padded prompt | right-padded response] layout (the rollout layout) for given token lists.

    Returns (input_ids, attention_mask, response_mask) with response_mask of shape (rows, response_width).
    """
    p_width = max(len(p) for p in prompts)
    r_width = max(max(len(r) for r in responses), 1)
    n = len(prompts)
    ids = torch.full((n, p_width + r_width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, p_width + r_width), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[i, p_width - len(p) : p_width] = torch.tensor(list(p), dtype=torch.long)
        attn[i, p_width - len(p) : p_width] = 1
        if r:
            ids[i, p_width : p_width + len(r)] = torch.tensor(list(r), dtype=torch.long)
            attn[i, p_width : p_width + len(r)] = 1
    return ids.to(device), attn.to(device), attn[:, p_width:].to(device)


def encode_completion(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int) -> list[int]:
    """Completion tokens followed by EOS (the model must learn to stop), truncated to `max_tokens`."""
    ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"][: max_tokens - 1]
    return [*ids, int(tokenizer.eos_token_id)]


def step_indices(n: int, batch: int, step: int, seed: int) -> list[int]:
    """The global example indices of `step`: epoch-wise seeded permutations, so any step is reproducible."""
    out = []
    for pos in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[offset]))
    return out


def chunks(n: int, size: int | None) -> list[slice]:
    """Contiguous slices of length `size` (None: all of it) covering range(n); none when n is 0."""
    size = size or max(n, 1)
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def global_minibatches(local_rows: int, k: int, rank: int, world: int, minibatch_size: int | None,
                       perm: torch.Tensor | None) -> list[torch.Tensor]:
    """This rank's rows of each minibatch of the step's global rollout, as local row indices.

    Rows are grouped by prompt (k per prompt) and prompts are dealt to ranks round-robin (Runtime.local),
    so local row r is global row ((r // k) * world + rank) * k + r % k. Minibatches are consecutive slices
    of `perm` (a permutation of the global rows, the same on every rank; None keeps their order), so N ranks
    together update on exactly the rows one process would; a rank's share of a minibatch may be empty.
    """
    global_rows = local_rows * world
    order = perm if perm is not None else torch.arange(global_rows)
    local_of = torch.full((global_rows,), -1, dtype=torch.long)
    r = torch.arange(local_rows)
    local_of[((r // k) * world + rank) * k + r % k] = r
    shares = []
    for sl in chunks(global_rows, minibatch_size):
        mine = local_of[order[sl]]
        shares.append(mine[mine >= 0])
    return shares


def response_forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_width: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and optionally entropies) of the last `response_width` tokens of each row.

    Only the logits that predict response tokens are materialised (`logits_to_keep`), which matters for
    large vocabularies.
    """
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        logits_to_keep=response_width + 1,
    )
    logits = out.logits[:, -response_width - 1 : -1, :].float() / temperature
    labels = input_ids[:, -response_width:]
    logp = logprobs_from_logits(logits, labels)
    ent = entropy_from_logits(logits).detach() if with_entropy else None
    return logp, ent


# --- reward ----------------------------------------------------------------------------------------------


def resolve_reward_dir(path: str | Path) -> Path:
    """A reward checkpoint directory (or a reward training output holding `model/`), via the reward package."""
    try:
        from worker.training.reward.scorer import resolve_checkpoint
    except ImportError:
        return Path(path)
    try:
        return Path(resolve_checkpoint(path))
    except Exception:  # noqa: BLE001 - not a prefloop checkpoint (e.g. a plain transformers directory)
        return Path(path)


def reward_fn_from_checkpoint(path: str | Path, device: torch.device, batch_size: int = 16) -> RewardFn:
    """Adapt a trained reward-model checkpoint to the RewardFn protocol.

    Uses prefloop's `worker.training.reward.RewardScorer` (imported lazily, so policy training works without
    the reward package) for checkpoints it wrote; a plain transformers sequence classifier directory (no
    meta.json) is scored directly on the chat-formatted prompt + completion + EOS.
    """
    root = Path(path)
    scorer: Any = None
    if (resolve_reward_dir(root) / "meta.json").is_file():
        try:
            from worker.training.reward import RewardScorer
        except ImportError:
            pass  # no reward package: scored as a plain sequence classifier below
        else:
            scorer = RewardScorer(root, device=device, batch_size=batch_size)
    if scorer is None:
        return _hf_reward_fn(root, device, batch_size)

    def scored(prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor:
        return torch.tensor(scorer.score(list(prompts), list(completions)), dtype=torch.float32)

    return scored


def _hf_reward_fn(path: str | Path, device: torch.device, batch_size: int) -> RewardFn:
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = (
        AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch.float32).to(device).eval()
    )
    pad = pad_token_id(tokenizer)

    @torch.no_grad()
    def score(prompts: Sequence[Prompt], completions: Sequence[str]) -> torch.Tensor:
        rows = []
        for p, c in zip(prompts, completions, strict=True):
            p_ids = tokenizer(format_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]
            rows.append((p_ids, encode_completion(tokenizer, c, 1024)))
        out = []
        for sl in chunks(len(rows), batch_size):
            part = rows[sl]
            ids, attn, _ = pack([r[0] for r in part], [r[1] for r in part], pad, device)
            # Left-align (right padding) so the classifier reads the last real token.
            order = torch.argsort(attn, dim=1, descending=True, stable=True)
            ids, attn = ids.gather(1, order), attn.gather(1, order)
            out.append(model(input_ids=ids, attention_mask=attn).logits[:, 0].float().cpu())
        return torch.cat(out)

    return score


# --- the loop state ---------------------------------------------------------------------------------------


@dataclass
class Runtime:
    """Everything an algorithm's loop body needs; built by `train_policy`."""

    config: PolicyTrainConfig
    policy: PreTrainedModel
    ref: PreTrainedModel | None
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    rank: int = 0
    world: int = 1
    value: ValueModel | None = None
    kl_ctl: Any = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def pad_id(self) -> int:
        """Pad token id (EOS when the tokenizer has none)."""
        return pad_token_id(self.tokenizer)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA (weights stay fp32); a no-op on CPU."""
        use = self.config.bf16 if self.config.bf16 is not None else self.device.type == "cuda"
        if use and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def local(self, items: Sequence[Any]) -> list[Any]:
        """This rank's share of a global batch."""
        return list(items[self.rank :: self.world])

    def params(self) -> list[nn.Parameter]:
        """Every trainable parameter (policy and, for PPO, value model)."""
        ps = [p for p in self.policy.parameters() if p.requires_grad]
        if self.value is not None:
            ps += [p for p in self.value.parameters() if p.requires_grad]
        return ps

    def optimizer_step(self) -> float:
        """Sum gradients over ranks (losses are already normalised by global counts), clip, step; returns grad norm."""
        params = self.params()
        if dist_active():
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def lr(self) -> float:
        """Current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])


def make_optimizer(
    config: PolicyTrainConfig, params: list[nn.Parameter], total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW plus warmup and a constant, linear or cosine schedule over `total_steps` outer steps."""
    opt = torch.optim.AdamW(
        params,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )

    def factor(step: int) -> float:
        if config.warmup_steps and step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        span = max(total_steps - config.warmup_steps, 1)
        progress = min(max(step - config.warmup_steps, 0) / span, 1.0)
        if config.lr_schedule == "linear":
            return 1.0 - progress
        if config.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
