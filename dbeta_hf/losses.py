"""The four D-BETA pretraining losses (reference spec section C). Plain functions: no loss holds a parameter (the
ETS `logit_scale` / `logit_bias` live on `DBetaForPreTraining`, as CLIP's and SigLIP's do on the model).

* MLM (`masked_mlm_loss`, what training runs; `mlm_loss` on full logits): cross-entropy over the vocabulary at the
  selected text positions (labels -100 elsewhere).
* MEM (`mem_loss`, target from `mem_target`): mean squared error between the predicted and the true ECG patch of
  every *masked* ECG token; the target is the ECG cut to `num_tokens * patch` samples, optionally z-normalized per
  lead over time.
* ETM (`etm_loss`): two-way cross-entropy of the ECG-text matching head (1 = the text belongs to the ECG).
* ETS (`ets_loss`, across processes `distributed_ets_loss`): a SigLIP-style sigmoid loss on the uni-modal embeddings
  whose diagonal label is `2 * match - 1`, so the rows that received an N3S negative report are negatives on the
  diagonal as well.

The ETS loss supports several processes (`torch.distributed`, as started by `accelerate launch` or
`torchrun`): every process scores its ECGs against the text embeddings of the whole global batch. Remote
blocks are all negatives (the official multi-GPU code wrongly labelled their diagonals positive). Gradients
flow back to the process that owns each text embedding.

Normalization of the distributed ETS loss: with a global batch of `N` pairs (`n_r` on process `r`), the
single-process loss is `sum(-logsigmoid(labels * logits)) / N**2` over the `N x N` matrix (the official
`.mean()`). Process `r` returns `world_size * partial_sum_r / N**2`, so that the mean of the per-process
losses (what DDP's gradient averaging optimises) equals the single-process loss over the global batch, in
value and in gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F


def mlm_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the vocabulary, ignoring positions labelled -100 (mean over scored positions)."""
    return F.cross_entropy(mlm_logits.reshape(-1, mlm_logits.shape[-1]).float(), mlm_labels.reshape(-1), ignore_index=-100)


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


def masked_mlm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The MLM loss training runs, on the logits at the gathered target positions (`gather_mlm_targets`): the mean
    cross-entropy over the real targets (-100 = padding)."""
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


def ets_logits(ecg_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor | float = 1.0,
               logit_bias: torch.Tensor | float | None = None) -> torch.Tensor:
    """ETS logits `scale * e @ t.T + bias` in float32, (num ECGs, num texts)."""
    logits = logit_scale * ecg_embeds.float() @ text_embeds.float().T
    return logits if logit_bias is None else logits + logit_bias


def ets_loss(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    match_labels: torch.Tensor | None = None,
    logit_scale: torch.Tensor | float = 1.0,
    logit_bias: torch.Tensor | float | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Single-process ETS loss: `-logsigmoid(labels * (scale * e @ t.T + bias))`, averaged over all B x B pairs.

    `labels` (B, B) of +-1 replaces the official diagonal rule (e.g. the collator's same-report positives)."""
    logits = ets_logits(ecg_embeds, text_embeds, logit_scale, logit_bias)
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
    if len(set(sizes)) == 1:
        return torch.cat(dist_nn.all_gather(tensor), dim=0), sizes
    # PyTorch's differentiable all_gather needs equal sizes; the last batch of an epoch can differ per process
    return _AllGatherWithGrad.apply(tensor, sizes, rank), sizes


def distributed_ets_loss(
    ecg_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    match_labels: torch.Tensor | None = None,
    logit_scale: torch.Tensor | float = 1.0,
    logit_bias: torch.Tensor | float | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """ETS loss of this process's ECGs against the texts of every process (the global batch); pairs with other
    processes' texts are negatives. Normalized as the module docstring says. Falls back to `ets_loss` in one process."""
    world_size, rank = _distributed_world()
    if world_size == 1:
        return ets_loss(ecg_embeds, text_embeds, match_labels, logit_scale, logit_bias, labels)
    all_texts, sizes = gather_with_grad(text_embeds)
    logits = ets_logits(ecg_embeds, all_texts, logit_scale, logit_bias)
    offset = sum(sizes[:rank])
    local_labels = labels
    labels = ets_labels(match_labels, ecg_embeds.shape[0], all_texts.shape[0], offset, device=logits.device)
    if local_labels is not None:
        labels[:, offset : offset + text_embeds.shape[0]] = local_labels.to(labels)
    total = sum(sizes)
    return world_size * (-F.logsigmoid(labels * logits)).sum() / float(total * total)
