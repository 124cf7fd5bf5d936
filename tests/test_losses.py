"""The four pretraining losses, by hand, and the ETS loss across processes (gloo, CPU)."""

from __future__ import annotations

import functools
import os
import tempfile

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from dbeta_hf import losses

from distributed_ets_worker import global_batch, worker


def test_ets_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    e, t = torch.tanh(torch.randn(4, 8, generator=g)), torch.tanh(torch.randn(4, 8, generator=g))
    match = torch.tensor([1, 0, 1, 1])
    total = 0.0
    for i in range(4):
        for j in range(4):
            label = (2 * match[i].item() - 1) if i == j else -1
            total += -F.logsigmoid(torch.tensor(label * (e[i] @ t[j]).item())).item()
    assert losses.ets_loss(e, t, match).item() == pytest.approx(total / 16, rel=1e-6)
    # the logits come from `logits_fn`: scale and bias enter them
    scaled = losses.ets_loss(e, t, match, logits_fn=functools.partial(losses.ecg_text_logits, scale=2.0, bias=-1.0))
    labels = losses.ets_labels(match, 4, 4)
    assert scaled.item() == pytest.approx((-F.logsigmoid(labels * (2.0 * e @ t.T - 1.0))).mean().item(), rel=1e-6)


def test_ecg_text_logits_by_hand():
    g = torch.Generator().manual_seed(0)
    e, t = torch.randn(3, 5, generator=g), torch.randn(4, 5, generator=g)
    torch.testing.assert_close(losses.ecg_text_logits(e, t), e @ t.T)
    torch.testing.assert_close(losses.ecg_text_logits(e, t, torch.tensor([2.0]), torch.tensor([-1.0])), 2.0 * e @ t.T - 1.0)
    cosine = F.normalize(e, dim=-1) @ F.normalize(t, dim=-1).T
    torch.testing.assert_close(losses.ecg_text_logits(e, t, 3.0, 0.5, normalize=True), 3.0 * cosine + 0.5)
    half = losses.ecg_text_logits(e.half(), t.bfloat16())
    assert half.dtype == torch.float32 and half.shape == (3, 4)
    with pytest.raises(ValueError, match=r"expected \(N, H\) ECG and \(M, H\) text embeddings"):
        losses.ecg_text_logits(e, t[:, :4])


def test_mem_target_and_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    ecg = torch.randn(2, 3, 50, generator=g)
    ecg[1, 2] = 0.0  # a zeroed lead gives a zero target
    target = losses.mem_target(ecg, num_tokens=6, patch_size=8, normalize=True)
    assert target.shape == (2, 6, 24)
    cut = ecg[..., :48]
    norm = (cut - cut.mean(-1, keepdim=True)) / torch.sqrt(cut.var(-1, keepdim=True, unbiased=True) + 1e-6)
    # token 2 of item 0: lead-major [lead0 s16..23, lead1 s16..23, lead2 s16..23]
    assert torch.allclose(target[0, 2], torch.cat([norm[0, lead, 16:24] for lead in range(3)]), atol=1e-6)
    assert torch.count_nonzero(target[1, :, 16:24]) == 0
    pred = torch.randn(2, 6, 3, 8, generator=g)
    mask = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1.0]])
    per_token = ((pred.reshape(2, 6, 24) - target) ** 2).mean(-1)
    expected = (per_token[0, 0] + per_token[0, 2] + per_token[1, 5]) / 3
    assert losses.mem_loss(pred, target, mask).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="MEM needs"):
        losses.mem_target(ecg, num_tokens=7, patch_size=8)


def test_mlm_and_etm_losses():
    logits = torch.randn(2, 3, 10)
    labels = torch.tensor([[4, -100, 1], [-100, -100, 9]])
    manual = torch.stack([F.cross_entropy(logits[0, 0:1], labels[0, 0:1]), F.cross_entropy(logits[0, 2:3], labels[0, 2:3]),
                          F.cross_entropy(logits[1, 2:3], labels[1, 2:3])]).mean()
    assert losses.mlm_loss(logits, labels).item() == pytest.approx(manual.item(), rel=1e-6)
    # the same loss on the logits gathered at the target positions (what training runs), and 0 without a target
    hidden, targets = losses.gather_mlm_targets(logits, labels, losses.mlm_positions(labels))
    assert losses.mlm_loss(hidden, targets).item() == pytest.approx(manual.item(), rel=1e-6)
    assert losses.mlm_loss(logits, torch.full_like(labels, -100)).item() == 0.0
    etm = torch.randn(4, 2)
    match = torch.tensor([1, 0, 0, 1])
    assert losses.etm_loss(etm, match).item() == pytest.approx(F.cross_entropy(etm, match).item(), rel=1e-6)


@pytest.mark.parametrize("sizes", [[3, 2], [2, 2, 2, 2]], ids=["2-processes-unequal", "4-processes"])
def test_distributed_ets_equals_single_process_global_batch(sizes):
    world_size = len(sizes)
    ecg, text, match = global_batch(sizes)
    ecg.requires_grad_(True)
    text.requires_grad_(True)
    reference = losses.ets_loss(ecg, text, match)
    reference.backward()
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(worker, args=(world_size, sizes, init_file, tmp), nprocs=world_size, join=True)
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(world_size)]
    # the mean of the per-process losses (what DDP optimises) is the single-process loss over the global batch
    mean_loss = torch.stack([r["loss"] for r in results]).mean()
    assert mean_loss.item() == pytest.approx(reference.item(), rel=1e-6)
    # each process holds world_size x the global gradient of its own rows; DDP's averaging over processes
    # then yields exactly the global-batch gradient for the parameters
    ecg_grad = torch.cat([r["ecg_grad"] for r in results]) / world_size
    text_grad = torch.cat([r["text_grad"] for r in results]) / world_size
    assert torch.allclose(ecg_grad, ecg.grad, atol=1e-7, rtol=1e-5)
    assert torch.allclose(text_grad, text.grad, atol=1e-7, rtol=1e-5)


def test_per_process_ets_equals_single_process_loss_on_the_local_batch():
    """`ets_global_batch=False` (the official per-GPU loss): each process scores only its own batch."""
    sizes = [3, 2]
    ecg, text, match = global_batch(sizes)
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        mp.spawn(worker, args=(len(sizes), sizes, init_file, tmp, False), nprocs=len(sizes), join=True)
        results = [torch.load(os.path.join(tmp, f"rank{r}.pt")) for r in range(len(sizes))]
    start = 0
    for size, result in zip(sizes, results):
        local_ecg = ecg[start : start + size].clone().requires_grad_(True)
        local_text = text[start : start + size].clone().requires_grad_(True)
        reference = losses.ets_loss(local_ecg, local_text, match[start : start + size])
        reference.backward()
        assert result["loss"].item() == pytest.approx(reference.item(), rel=1e-6)
        assert torch.allclose(result["ecg_grad"], local_ecg.grad, atol=1e-7, rtol=1e-5)
        assert torch.allclose(result["text_grad"], local_text.grad, atol=1e-7, rtol=1e-5)
        start += size
    # and it is not the global-batch loss (the remote negatives are missing)
    assert torch.stack([r["loss"] for r in results]).mean().item() != pytest.approx(losses.ets_loss(ecg, text, match).item(), rel=1e-3)


def test_ets_global_batch_argument_reaches_the_loss(monkeypatch):
    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.pretraining.recipes import tiny_config

    called = []

    def global_loss(*args, **kwargs):
        called.append(kwargs["logits_fn"])
        return losses.ets_loss(*args, **kwargs)

    monkeypatch.setattr(losses, "distributed_ets_loss", global_loss)
    ecg, ids = torch.randn(2, 12, 256), torch.tensor([[5, 6, 1], [7, 8, 1]])
    model = DBetaForPreTraining(tiny_config(num_samples=256)).eval()
    for global_batch in (True, False):
        model(ecg, ids, return_loss=True, ets_global_batch=global_batch)
    model(ecg, ids, return_loss=True)  # default: per process (official)
    assert called == [model.model.ecg_text_logits]  # once, with the base model's ECG-text logits


def test_losses_hold_no_parameters():
    """The ETS scale and bias are parameters of the base model (as CLIP's logit_scale), not of a loss module."""
    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.pretraining.recipes import tiny_config

    model = DBetaForPreTraining(tiny_config(num_samples=256, ets_learnable_scale=True, ets_learnable_bias=True,
                                            ets_logit_bias_init=-1.0))
    assert {"model.logit_scale", "model.logit_bias"} <= {name for name, _ in model.named_parameters()}
    assert not any(isinstance(value, torch.nn.Module) for value in vars(losses).values())


def test_remote_blocks_are_all_negative():
    # with two "processes" folded into one matrix, the cross block carries no positive label
    labels = losses.ets_labels(torch.tensor([1, 0]), 2, 4, diagonal_offset=2)
    assert labels.tolist() == [[-1, -1, 1, -1], [-1, -1, -1, -1]]


def test_explicit_ets_labels_replace_the_diagonal_rule():
    g = torch.Generator().manual_seed(1)
    e, t = torch.tanh(torch.randn(3, 4, generator=g)), torch.tanh(torch.randn(3, 4, generator=g))
    labels = torch.tensor([[1.0, 1.0, -1.0], [1.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    expected = (-F.logsigmoid(labels * (e @ t.T))).mean()
    assert losses.ets_loss(e, t, labels=labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses.distributed_ets_loss(e, t, torch.tensor([1, 1, 0]), labels=labels).item() == pytest.approx(
        expected.item(), rel=1e-6)  # one process: the same loss
    # the diagonal rule is the special case of unique reports
    diag = losses.ets_labels(torch.tensor([1, 1, 0]), 3, 3)
    assert losses.ets_loss(e, t, labels=diag).item() == pytest.approx(losses.ets_loss(e, t, torch.tensor([1, 1, 0])).item())
