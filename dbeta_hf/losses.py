"""The four D-BETA pretraining losses (reference spec section C) and the ECG-text logits they and the evaluation
share. Plain functions: no loss holds a parameter (the ECG-text `logit_scale` / `logit_bias` live on `DBetaModel`, as
CLIP's and SigLIP's do on the model).

* MLM (`mlm_loss`): cross-entropy over the vocabulary at the labelled text positions (labels -100 elsewhere), on the
  full logits or on those gathered at the target positions (`gather_mlm_targets`, what training runs).
* MEM (`mem_loss`, target from `mem_target`): mean squared error between the predicted and the true ECG patch of
  every *masked* ECG token; the target is the ECG cut to `num_tokens * patch_size` samples, optionally z-normalized
  per lead over time.
* ETM (`etm_loss`): two-way cross-entropy of the ECG-text matching head (1 = the text belongs to the ECG).
* ETS (`ets_loss`, across processes `distributed_ets_loss`): a SigLIP-style sigmoid loss on the ECG-text logits of
  the uni-modal embeddings (`ecg_text_logits`, the model passes its `DBetaModel.ecg_text_logits`), whose diagonal
  label is `2 * match - 1`, so the rows that received an N3S negative report are negatives on the diagonal as well.

`distributed_ets_loss` scores every process's ECGs against the text embeddings of the whole global batch
(`torch.distributed`, as started by `accelerate launch` or `torchrun`). Pairs with other processes' texts are all
negatives. Gradients flow back to the process that owns each text embedding.

Normalization of the distributed ETS loss: with a global batch of `N` pairs (`n_r` on process `r`), the
single-process loss is `sum(-logsigmoid(labels * logits)) / N**2` over the `N x N` matrix. Process `r` returns
`world_size * partial_sum_r / N**2`, so that the mean of the per-process losses (what DDP's gradient averaging
optimises) equals the single-process loss over the global batch, in value and in gradient.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F


def mlm_positions(mlm_labels: torch.Tensor) -> torch.Tensor:
    """(B, L) MLM labels -> (B, K) positions of the targets of each row, left-aligned and padded with -1.

    K is the largest number of targets in a row. Computed by the collator on the CPU, it lets the model gather the
    MLM targets without a host-device synchronisation.
    """
    selected = mlm_labels != -100
    width = max(int(selected.sum(dim=1).max()), 1) if selected.numel() else 1
    order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :width]
    return torch.where(torch.gather(selected, 1, order), order, torch.full_like(order, -1))


def gather_mlm_targets(fused_text: torch.Tensor, mlm_labels: torch.Tensor, positions: torch.Tensor | None = None):
    """The fused text states (B, K, H) at the MLM target positions and their labels (B, K; -100 on padding), so that
    the MLM head runs on those positions only (the same loss as on the full logits, a fraction of the compute).

    `positions` (B, K; -1 padded, the collator's `mlm_positions`) lets the gather run without a host-device
    synchronisation; without them they are derived from `mlm_labels` here (one synchronisation).
    """
    if positions is None:
        positions = mlm_positions(mlm_labels)
    index = positions.clamp_min(0)
    hidden = torch.gather(fused_text, 1, index[..., None].expand(-1, -1, fused_text.shape[-1]))
    targets = torch.where(positions >= 0, torch.gather(mlm_labels, 1, index), torch.full_like(index, -100))
    return hidden, targets


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the vocabulary at the scored positions: (..., V) logits and (...) targets, -100 = not
    scored (0 when no position is scored). Takes the full (B, L, V) logits with the (B, L) labels, or the logits
    gathered at the target positions (`gather_mlm_targets`)."""
    count = (targets != -100).sum().clamp_min(1)
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100,
                          reduction="sum")
    return nll / count


def mlm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of the labelled positions (labels != -100) whose argmax is the label (for logging)."""
    valid = labels != -100
    return ((logits.argmax(-1) == labels) & valid).sum() / valid.sum().clamp_min(1)


def mem_target(ecg_values: torch.Tensor, num_tokens: int, patch_size: int, normalize: bool = True,
               eps: float = 1e-6) -> torch.Tensor:
    """The MEM reconstruction target, (B, num_tokens, leads * patch_size), lead-major inside each token.

    The ECG (B, leads, samples) is cut to its first `num_tokens * patch_size` samples. With `normalize`, every lead
    is z-normalized over those samples (mean and *unbiased* variance, `eps` added to the variance), as the official
    `norm_pix_loss`; a zeroed lead stays zero.
    """
    batch, leads, samples = ecg_values.shape
    length = num_tokens * patch_size
    if samples < length:
        raise ValueError(f"the ECG has {samples} samples but MEM needs {length} ({num_tokens} tokens x {patch_size})")
    target = ecg_values[..., :length].float()
    if normalize:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True, unbiased=True)
        target = (target - mean) / torch.sqrt(var + eps)
    target = target.view(batch, leads, num_tokens, patch_size).permute(0, 2, 1, 3)
    return target.reshape(batch, num_tokens, leads * patch_size)


def mem_loss(mem_logits: torch.Tensor, target: torch.Tensor, mem_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per token, averaged over the masked tokens only (`mem_mask` 1 = masked)."""
    pred = mem_logits.reshape(target.shape).float()
    per_token = (pred - target).pow(2).mean(dim=-1)
    mask = mem_mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def etm_loss(etm_logits: torch.Tensor, match_labels: torch.Tensor) -> torch.Tensor:
    """Two-way cross-entropy of the ECG-text matching head."""
    return F.cross_entropy(etm_logits.float(), match_labels.long())


def ets_labels(match_labels: torch.Tensor | None, num_ecgs: int, num_texts: int, diagonal_offset: int = 0, device=None) -> torch.Tensor:
    """-1 everywhere; on the block diagonal starting at column `diagonal_offset`, `2 * match - 1` (all +1 without
    `match_labels`)."""
    labels = -torch.ones(num_ecgs, num_texts, device=device)
    idx = torch.arange(num_ecgs, device=device)
    diag = torch.ones(num_ecgs, device=device) if match_labels is None else 2.0 * match_labels.float() - 1.0
    labels[idx, idx + diagonal_offset] = diag
    return labels


def ecg_text_logits(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    scale: torch.Tensor | float | None = None,
    bias: torch.Tensor | float | None = None,
    normalize: bool = False,
) -> torch.Tensor:
    """(N, H) ECG and (M, H) text embeddings -> (N, M) logits `scale * e @ t.T + bias`, in float32 on the ECGs' device.

    `scale` is the scale itself (`DBetaModel` passes `logit_scale.exp()`); `None` = 1, `bias` `None` = no bias. With
    `normalize` both sides are L2-normalized first (cosine logits). The one definition of the ECG-text logits:
    `DBetaModel.ecg_text_logits` calls it with the model's scale, bias and normalization.
    """
    if ecg_embeds.dim() != 2 or text_embeds.dim() != 2 or ecg_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            f"expected (N, H) ECG and (M, H) text embeddings, got {tuple(ecg_embeds.shape)} and {tuple(text_embeds.shape)}"
        )
    ecg = ecg_embeds.float()
    text = text_embeds.float().to(ecg.device)
    if normalize:
        ecg, text = F.normalize(ecg, dim=-1), F.normalize(text, dim=-1)
    if scale is not None:
        ecg = _as_float32(scale, ecg.device) * ecg
    logits = ecg @ text.T
    return logits if bias is None else logits + _as_float32(bias, ecg.device)


def _as_float32(value: torch.Tensor | float, device: torch.device) -> torch.Tensor | float:
    return value.to(device=device, dtype=torch.float32) if isinstance(value, torch.Tensor) else value


def ets_loss(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    match_labels: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ecg_text_logits,
) -> torch.Tensor:
    """Single-process ETS loss: `-logsigmoid(labels * logits_fn(e, t))`, averaged over all B x B pairs.

    `logits_fn` computes the ECG-text logits (the model passes `DBetaModel.ecg_text_logits`; the default is the raw
    dot product). `labels` (B, B) of +-1 replaces the diagonal rule (e.g. the collator's same-report positives)."""
    logits = logits_fn(ecg_embeds, text_embeds)
    if labels is None:
        labels = ets_labels(match_labels, ecg_embeds.shape[0], text_embeds.shape[0], device=logits.device)
    return -F.logsigmoid(labels.to(logits) * logits).mean()


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather of variable-size first dimensions whose backward returns each process its own gradient slice,
    summed over all processes (an all-reduce, so it also runs on the gloo backend)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, sizes: list[int], rank: int):
        ctx.sizes, ctx.rank = sizes, rank
        max_size = max(sizes)
        padded = tensor.new_zeros((max_size, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        gathered = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded.contiguous())
        return torch.cat([g[:n] for g, n in zip(gathered, sizes)], dim=0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def _distributed_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_with_grad(tensor: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """All processes' `tensor`s concatenated along dim 0 (differentiable), and the per-process sizes."""
    world_size, rank = _distributed_world()
    local = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes_t = [torch.zeros_like(local) for _ in range(world_size)]
    dist.all_gather(sizes_t, local)
    sizes = [int(s.item()) for s in sizes_t]
    # `dist.all_gather` in an autograd Function, not the deprecated `torch.distributed.nn.functional.all_gather`
    # (same gradient: each process gets the sum over processes of its slice); sizes may differ per process (the
    # last batch of an epoch)
    return _AllGatherWithGrad.apply(tensor, sizes, rank), sizes


def distributed_ets_loss(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    match_labels: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    logits_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = ecg_text_logits,
) -> torch.Tensor:
    """ETS loss of this process's ECGs against the texts of every process (the global batch); pairs with other
    processes' texts are negatives. Normalized as the module docstring says. `ets_loss` in one process."""
    world_size, rank = _distributed_world()
    if world_size == 1:
        return ets_loss(ecg_embeds, text_embeds, match_labels, labels, logits_fn)
    all_texts, sizes = gather_with_grad(text_embeds)
    logits = logits_fn(ecg_embeds, all_texts)
    offset = sum(sizes[:rank])
    local_labels = labels
    labels = ets_labels(match_labels, ecg_embeds.shape[0], all_texts.shape[0], offset, device=logits.device)
    if local_labels is not None:
        labels[:, offset : offset + text_embeds.shape[0]] = local_labels.to(labels)
    total = sum(sizes)
    return world_size * (-F.logsigmoid(labels * logits)).sum() / float(total * total)
