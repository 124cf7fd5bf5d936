"""Bad model inputs are one-line errors naming the problem (tiny configs, CPU)."""

from __future__ import annotations

import logging

import pytest
import torch

from dbeta_hf import DBetaForECGClassification, DBetaForPreTraining
from dbeta_hf.pretraining.recipes import tiny_config

NUM_SAMPLES = 5000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DBetaForPreTraining(tiny_config()).eval()


def make_inputs(batch=2, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ecg = torch.randn(batch, 12, NUM_SAMPLES, generator=g) * 0.3
    ids = torch.randint(3, 400, (batch, length), generator=g)
    ids[:, -1] = 1
    return ecg, ids, torch.ones(batch, length, dtype=torch.long)


def test_valid_inputs_pass(model):
    ecg, ids, mask = make_inputs()
    mask[1, 3:] = 0  # padding is fine
    ids[1, 3:] = 0
    assert torch.isfinite(model(ecg, ids, mask, return_loss=True).loss)


def test_all_zero_attention_mask_row(model):
    ecg, ids, mask = make_inputs()
    mask[1] = 0
    with pytest.raises(ValueError, match=r"attention_mask rows \[1\] are all zero"):
        model(ecg, ids, mask)


@pytest.mark.parametrize("row", [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
def test_empty_report_is_an_error(model, row):
    ecg, ids, mask = make_inputs()
    ids[0] = torch.tensor(row)  # '' or '***' tokenise to a lone </s>
    mask[0] = torch.tensor([1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"text\(s\) \[0\] are empty"):
        model(ecg, ids, mask)
    with pytest.raises(ValueError, match="are empty"):
        model.get_text_features(ids, mask)


@pytest.mark.parametrize("bad_id, shown", [(500, "max 500"), (-3, "min -3")])
def test_input_ids_outside_the_vocabulary(model, bad_id, shown):
    ecg, ids, mask = make_inputs()
    ids[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"text\(s\) \[1\] hold ids outside \[0, 500\) .*{shown}"):
        model(ecg, ids, mask)


def test_batch_size_mismatch_and_empty_batches(model):
    ecg, ids, mask = make_inputs()
    with pytest.raises(ValueError, match="ecg_values holds 2 ECGs but input_ids 1 texts"):
        model(ecg, ids[:1], mask[:1])
    with pytest.raises(ValueError, match="ecg_values holds 2 ECGs but input_ids 1 texts"):
        model.model(ecg_values=ecg, input_ids=ids[:1], attention_mask=mask[:1])
    with pytest.raises(ValueError, match="ecg_values is an empty batch"):
        model.get_ecg_features(ecg[:0])
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(ecg[:0], ids[:0], mask[:0])
    with pytest.raises(ValueError, match="input_ids is empty"):
        model.get_text_features(ids[:0], mask[:0])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ecg, ids, mask[:, :3])


def test_half_precision_ecg_is_cast_with_one_warning(model, caplog):
    ecg, ids, mask = make_inputs()
    expected = model.get_ecg_features(ecg.half().float())
    with caplog.at_level(logging.WARNING):
        got = model.get_ecg_features(ecg.half())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    assert "ecg_values are torch.float16 but the model is torch.float32" in caplog.text
    classifier = DBetaForECGClassification(tiny_config(num_labels=3)).eval()
    assert classifier(ecg.to(torch.bfloat16)).logits.shape == (2, 3)


def test_nan_message_names_the_feature_extractor_setting(model):
    ecg, ids, mask = make_inputs()
    ecg[1, 4, 10] = float("nan")
    with pytest.raises(ValueError, match=r"DBetaECGFeatureExtractor\(non_finite='zero' or 'interpolate'\)"):
        model.get_ecg_features(ecg)


def test_value_checks_follow_validate_inputs():
    config = tiny_config()
    config.validate_inputs = False  # no host-device synchronisation: out-of-range ids reach the embedding
    unchecked = DBetaForPreTraining(config).eval()
    ecg, ids, mask = make_inputs()
    mask[0] = 0
    assert torch.isfinite(unchecked(ecg, ids, mask, return_loss=True).ets_loss)  # an all-zero row passes unchecked
