"""The input convention of a checkpoint: saved lead order and scaling, the converter's choice, and the label-free
MEM diagnostic that measures it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoFeatureExtractor

from dbeta_hf import DBetaECGFeatureExtractor
from dbeta_hf import CANONICAL_LEAD_NAMES
from dbeta_hf.input_convention import MIMIC_LEAD_NAMES

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"
pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _lead_index_record(num_samples: int = 5000) -> np.ndarray:
    """Row i holds the value i + 1 (a standard-order record whose leads can be told apart after reordering)."""
    return np.repeat(np.arange(1, 13, dtype=np.float32)[:, None], num_samples, axis=1)


def test_mimic_lead_order_reaches_the_model_with_avf_before_avl():
    extractor = DBetaECGFeatureExtractor(lead_order="mimic")
    assert extractor.lead_names == MIMIC_LEAD_NAMES and extractor.lead_order == "mimic"
    values = extractor(_lead_index_record(), sampling_rate=500, lead_names=CANONICAL_LEAD_NAMES)["ecg_values"][0]
    assert values[4, 0] == 1 + CANONICAL_LEAD_NAMES.index("aVF")  # aVF at index 4
    assert values[5, 0] == 1 + CANONICAL_LEAD_NAMES.index("aVL")  # aVL at index 5
    np.testing.assert_array_equal(values[[0, 1, 2, 3, 6, 11], 0], [1, 2, 3, 4, 7, 12])
    standard = DBetaECGFeatureExtractor()(_lead_index_record(), sampling_rate=500)["ecg_values"][0]
    assert standard[4, 0] == 5 and standard[5, 0] == 6
    assert DBetaECGFeatureExtractor().lead_order == "standard"


def test_per_lead_zscore_is_applied_after_cropping(tmp_path):
    rng = np.random.default_rng(0)
    ecg = rng.normal(loc=0.3, scale=0.2, size=(12, 6000)).astype(np.float32)
    ecg[:, 5000:] += 50.0  # beyond the crop: must not enter the statistics
    extractor = DBetaECGFeatureExtractor(input_normalization="per-lead-zscore")
    assert extractor.do_normalize and extractor.input_normalization == "per-lead-zscore"
    values = extractor(ecg, sampling_rate=500)["ecg_values"][0].astype(np.float64)
    np.testing.assert_allclose(values.mean(axis=-1), 0.0, atol=1e-5)
    np.testing.assert_allclose(values.std(axis=-1), 1.0, atol=1e-4)
    # both settings survive save / load
    DBetaECGFeatureExtractor(lead_order="mimic", input_normalization="per-lead-zscore").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["lead_order"] == "mimic" and saved["input_normalization"] == "per-lead-zscore"
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.lead_names == MIMIC_LEAD_NAMES and loaded.do_normalize
    # a load-time override of either form of a setting wins over the saved one
    overridden = AutoFeatureExtractor.from_pretrained(tmp_path, lead_names=CANONICAL_LEAD_NAMES, do_normalize=False)
    assert overridden.lead_order == "standard" and overridden.input_normalization == "none"
    overridden = AutoFeatureExtractor.from_pretrained(tmp_path, lead_order="standard", input_normalization="none")
    assert overridden.lead_names == CANONICAL_LEAD_NAMES and not overridden.do_normalize


def test_conflicting_convention_settings_raise():
    with pytest.raises(ValueError, match="lead_order='mimic' means"):
        DBetaECGFeatureExtractor(lead_order="mimic", lead_names=CANONICAL_LEAD_NAMES)
    with pytest.raises(ValueError, match="contradicts do_normalize"):
        DBetaECGFeatureExtractor(input_normalization="none", do_normalize=True)
    with pytest.raises(ValueError, match="unknown lead_order"):
        DBetaECGFeatureExtractor(lead_order="ptbxl")
    with pytest.raises(ValueError, match="unknown input_normalization"):
        DBetaECGFeatureExtractor(input_normalization="minmax")
    custom = DBetaECGFeatureExtractor(lead_names=["II", "I"] + CANONICAL_LEAD_NAMES[2:])
    assert custom.lead_order == "custom"
    assert DBetaECGFeatureExtractor(**custom.to_dict()).lead_names == custom.lead_names


def _convert(tmp_path, *flags):
    from dbeta_hf.conversion.convert_original_checkpoint import main

    out = tmp_path / "converted"
    code = main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                 "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(out), *flags])
    assert code == 0
    return out


def test_converter_writes_the_explicit_convention(tmp_path, caplog):
    caplog.set_level("INFO")
    out = _convert(tmp_path, "--lead-order", "mimic", "--input-normalization", "none")
    extractor = AutoFeatureExtractor.from_pretrained(out)  # written without --tokenizer
    assert extractor.lead_order == "mimic" and extractor.input_normalization == "none"
    values = extractor(_lead_index_record(), sampling_rate=500, lead_names=CANONICAL_LEAD_NAMES)["ecg_values"][0]
    assert (values[4, 0], values[5, 0]) == (6, 5)  # aVF, aVL
    record = json.loads((out / "input_convention.json").read_text())
    assert record["lead_order"] == "mimic" and record["decided_by"]["lead_order"] == "explicit flag"
    assert "diagnostic" not in record  # both given: nothing measured
    assert "lead_order = mimic (explicit flag)" in caplog.text


def test_converter_measures_unset_settings_and_defaults_when_inconclusive(tmp_path, caplog):
    caplog.set_level("INFO")
    out = _convert(tmp_path, "--input-normalization", "per-lead-zscore", "--diagnostic-records", "4",
                   "--min-margin", "1e9")
    record = json.loads((out / "input_convention.json").read_text())
    assert record["lead_order"] == "standard" and "inconclusive" in record["decided_by"]["lead_order"]
    assert record["input_normalization"] == "per-lead-zscore"
    assert set(record["diagnostic"]["losses"]) == {"standard/per-lead-zscore", "mimic/per-lead-zscore"}
    assert "inconclusive" in caplog.text
    extractor = AutoFeatureExtractor.from_pretrained(out)
    assert extractor.lead_order == "standard" and extractor.do_normalize

    # a zero margin threshold takes whatever the measurement says, for each setting
    out = _convert(tmp_path / "again", "--diagnostic-records", "4", "--min-margin", "0")
    record = json.loads((out / "input_convention.json").read_text())
    best = record["diagnostic"]["best"]
    assert [record["lead_order"], record["input_normalization"]] == best
    assert len(record["diagnostic"]["losses"]) == 6  # 2 lead orders x 3 input normalizations of the extractor
    assert record["decided_by"]["lead_order"].startswith("diagnostic (margin")


def _pretrain_mem_only(lead_order: str, input_normalization: str, ecgs: np.ndarray, steps: int = 200):
    """A tiny D-BETA pretrained with MEM alone on `ecgs` prepared in one convention (2 s inputs, half masked)."""
    import torch

    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.conversion.diagnose_input_convention import prepare_for_convention
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    model = DBetaForPreTraining(tiny_config(num_samples=1000, mem_mask_ratio=0.5))
    # the feature extractor's conventions, or per_record_minmax of its millivolt output (the diagnostic's own inputs)
    values = prepare_for_convention(model.config, lead_order, input_normalization, ecgs=ecgs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    ids = torch.ones(8, 1, dtype=torch.long)  # the text is the end-of-sequence token alone, as in the diagnostic
    model.train()
    for _ in range(steps):
        batch = values[torch.randint(0, len(values), (8,), generator=generator)]
        loss = model(ecg_values=batch, input_ids=ids, attention_mask=torch.ones_like(ids),
                     return_mlm_logits=False, return_loss=True).mem_loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


ALL_SIX = {f"{order}/{norm}" for order in ("standard", "mimic") for norm in ("none", "per-lead-zscore", "per-record-minmax")}


@pytest.mark.parametrize("convention", [("standard", "none"), ("mimic", "per-lead-zscore")])
def test_diagnostic_finds_the_convention_a_model_was_pretrained_in(convention):
    """Two tiny models, pretrained on the same ECGs in opposite conventions: the MEM diagnostic, run on those
    ECGs, ranks each model's own convention first. Measured margins (loss increase when one setting is flipped):
    standard/none model: lead order 22 %, per-lead z-score 7.0 %; mimic/z-score model: lead order 24 %, scaling 9.8 %.
    The per-record min-max input of the model's lead order is ranked together with `none` (`equivalent`): this
    architecture cannot tell the two apart (tests/test_diagnose_minmax.py)."""
    from dbeta_hf.conversion.diagnose_input_convention import diagnose_input_convention, synthetic_diagnostic_ecgs

    ecgs = synthetic_diagnostic_ecgs(8, seed=1)
    model = _pretrain_mem_only(*convention, ecgs)
    report = diagnose_input_convention(model, ecgs=ecgs, seed=0)
    assert report["best"] == convention, report["losses"]
    assert set(report["losses"]) == ALL_SIX
    assert report["affine_invariant"]
    assert report["equivalent"] == ([f"{convention[0]}/per-record-minmax"] if convention[1] == "none" else [])
    assert report["axis_margins"]["lead_order"] > 0.10  # conclusive at the default 5 % threshold
    assert report["axis_margins"]["input_normalization"] > 0.01
    assert report["margin"] <= min(report["axis_margins"].values())  # the runner-up is at least as close
    flipped_order = ("mimic" if convention[0] == "standard" else "standard") + "/" + convention[1]
    assert report["flip_margins"][flipped_order] == pytest.approx(report["axis_margins"]["lead_order"])


def test_diagnostic_cli_reports_the_six_losses(tmp_path, capsys):
    import torch

    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.conversion.diagnose_input_convention import main
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    DBetaForPreTraining(tiny_config(num_samples=1000)).save_pretrained(tmp_path / "model")
    assert main(["--model", str(tmp_path / "model"), "--num-synthetic", "3", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "3 synthetic ECG(s)" in printed and "margin" in printed
    assert all(name in printed for name in ALL_SIX)
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["losses"]) == ALL_SIX and report["num_records"] == 3
    # the best is the lowest loss once each per-record-minmax input is ranked with the `none` of its lead order
    ranked = {name: loss for name, loss in report["losses"].items() if not name.endswith("/per-record-minmax")}
    assert min(ranked.values()) == report["losses"]["/".join(report["best"])]
    assert report["best"][1] != "per-record-minmax"

    from dbeta_hf import DBetaModel
    from dbeta_hf.conversion.diagnose_input_convention import diagnose_input_convention

    model = DBetaForPreTraining(tiny_config(num_samples=1000))
    diagnose_input_convention(model, num_synthetic=2)

    DBetaModel(tiny_config(num_samples=1000)).save_pretrained(tmp_path / "base")
    assert main(["--model", str(tmp_path / "base"), "--num-synthetic", "2"]) == 1
    assert "no MEM head" in capsys.readouterr().err


def test_diagnostic_reads_wfdb_records(tmp_path, capsys):
    import torch

    import data_fixtures as fx
    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.conversion.diagnose_input_convention import main
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    DBetaForPreTraining(tiny_config(num_samples=1000)).save_pretrained(tmp_path / "model")
    _, records = fx.write_physionet_challenge(tmp_path / "cpsc", fx.default_cpsc_records()[:2], "cpsc2018")
    paths = [str(r["path"]) for r in records.values()]
    assert main(["--model", str(tmp_path / "model"), "--records", *paths, "--json", str(tmp_path / "r.json")]) == 0
    assert "2 WFDB record(s)" in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["num_records"] == 2 and set(report["losses"]) == ALL_SIX
