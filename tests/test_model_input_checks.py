"""Bad model inputs are one-line errors naming the problem, raised on the host before the model runs: the value checks
live in the processor (`check_text_inputs`, `DBetaProcessor.check_model_inputs`, the feature extractor) and the
pretraining collator; the model checks shapes only (tiny configs, CPU)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dbeta_hf import DBetaForECGClassification, DBetaForPreTraining, DBetaProcessor
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator
from dbeta_hf.pretraining.recipes import tiny_config
from dbeta_hf.processing_dbeta import check_batch_sizes, check_text_inputs

NUM_SAMPLES = 5000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DBetaForPreTraining(tiny_config()).eval()


@pytest.fixture(scope="module")
def processor(tiny_tokenizer_path):
    return DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path))


def make_inputs(batch=2, length=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ecg = torch.randn(batch, 12, NUM_SAMPLES, generator=g) * 0.3
    ids = torch.randint(3, 400, (batch, length), generator=g)
    ids[:, -1] = 1
    return ecg, ids, torch.ones(batch, length, dtype=torch.long)


def batch_of(ecg, ids, mask):
    return {"ecg_values": ecg, "input_ids": ids, "attention_mask": mask}


def test_valid_inputs_pass_the_checks_and_the_model(model, processor):
    ecg, ids, mask = make_inputs()
    mask[1, 3:] = 0  # padding is fine
    ids[1, 3:] = 0
    processor.check_model_inputs(batch_of(ecg, ids, mask), vocab_size=500)
    check_text_inputs(ids.numpy(), mask.tolist(), vocab_size=500)  # arrays and lists alike
    assert torch.isfinite(model(ecg, ids, mask, return_loss=True).loss)


def test_all_zero_attention_mask_row(processor):
    ecg, ids, mask = make_inputs()
    mask[1] = 0
    with pytest.raises(ValueError, match=r"attention_mask rows \[1\] are all zero"):
        processor.check_model_inputs(batch_of(ecg, ids, mask))


@pytest.mark.parametrize("row", [[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
def test_text_of_only_end_token_or_padding_is_an_error(processor, row):
    ecg, ids, mask = make_inputs()
    ids[0] = torch.tensor(row)  # '' or '***' tokenise to a lone </s>
    mask[0] = torch.tensor([1, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"text\(s\) \[0\] are empty"):
        processor.check_model_inputs(batch_of(ecg, ids, mask))
    with pytest.raises(ValueError, match="are empty"):
        check_text_inputs(ids, mask)
    with pytest.raises(ValueError, match=r"text\(s\) \[0\] are empty"):  # the ETS text view too
        processor.check_model_inputs({"input_ids": ids[[1, 1]], "ets_input_ids": ids, "ets_attention_mask": mask})


@pytest.mark.parametrize("bad_id, shown", [(500, "max 500"), (-3, "min -3")])
def test_input_ids_outside_the_vocabulary(processor, bad_id, shown):
    ecg, ids, mask = make_inputs()
    ids[1, 2] = bad_id
    with pytest.raises(ValueError, match=rf"text\(s\) \[1\] hold ids outside \[0, 500\) .*{shown}"):
        processor.check_model_inputs(batch_of(ecg, ids, mask), vocab_size=500)
    if bad_id >= 0:
        check_text_inputs(ids, mask, vocab_size=501)  # inside a larger vocabulary


def test_batch_size_mismatch_and_empty_batches(processor):
    ecg, ids, mask = make_inputs()
    with pytest.raises(ValueError, match="ecg_values holds 2 ECGs but input_ids 1 texts"):
        processor.check_model_inputs(batch_of(ecg, ids[:1], mask[:1]))
    with pytest.raises(ValueError, match="ecg_values holds 3 ECGs but input_ids 2 texts"):
        check_batch_sizes(3, 2)
    unpaired = processor(ecg=ecg[:1].numpy(), sampling_rate=500, text=["sinus rhythm", "atrial fibrillation"])
    assert unpaired["ecg_values"].shape[0] == 1 and unpaired["input_ids"].shape[0] == 2  # one ECG, several prompts
    with pytest.raises(ValueError, match="non-empty"):
        processor.check_model_inputs({"ecg_values": ecg[:0]})
    with pytest.raises(ValueError, match="input_ids is empty"):
        processor.check_model_inputs({"input_ids": ids[:0], "attention_mask": mask[:0]})
    with pytest.raises(ValueError, match="attention_mask has shape"):
        processor.check_model_inputs({"input_ids": ids, "attention_mask": mask[:, :3]})
    with pytest.raises(TypeError, match="integer token ids"):
        check_text_inputs(ids.float())


def test_non_finite_and_implausible_ecgs(processor):
    ecg, ids, mask = make_inputs()
    ecg[1, 4, 10] = float("nan")
    with pytest.raises(ValueError, match=r"ECG item 1 contains NaN or infinite values in lead\(s\) aVL \(row 4\)"):
        processor.check_model_inputs(batch_of(ecg, ids, mask))
    with pytest.raises(ValueError, match=r"non_finite='zero'"):
        processor.check_model_inputs({"ecg_values": ecg[1:]})
    microvolts = make_inputs()[0] * 1000
    with pytest.raises(ValueError, match="look like microvolts: pass units='uV'"):
        processor.check_model_inputs({"ecg_values": microvolts})


def test_the_collator_refuses_a_tokenizer_larger_than_the_model_vocabulary(tiny_tokenizer):
    small = tiny_config(vocab_size=300)
    with pytest.raises(ValueError, match="the tokenizer has 500 tokens but the model's text vocabulary only 300"):
        DBetaPreTrainingCollator.from_config(small, tiny_tokenizer)
    collator = DBetaPreTrainingCollator.from_config(tiny_config(), tiny_tokenizer)
    assert collator.vocab_size == 500


def test_the_collator_refuses_empty_reports_and_bad_ecgs(tiny_tokenizer):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=64)
    ecg = np.random.default_rng(0).normal(scale=0.3, size=(12, 64)).astype(np.float32)
    with pytest.raises(ValueError, match=r"text\(s\) 1 \('\*\*\*'\) are empty after normalization"):
        collator([{"ecg": ecg, "report": "sinus rhythm."}, {"ecg": ecg, "report": "***"}])
    with pytest.raises(ValueError, match="cannot collate an empty batch"):
        collator([])
    with pytest.raises(ValueError, match="look like microvolts"):
        collator([{"ecg": ecg * 1000, "report": "sinus rhythm."}])


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


def test_the_model_keeps_its_shape_checks(model):
    ecg, ids, mask = make_inputs()
    with pytest.raises(ValueError, match="ecg_values holds 2 ECGs but input_ids 1 texts"):
        model(ecg, ids[:1], mask[:1])
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(ecg, ids, mask[:, :3])
