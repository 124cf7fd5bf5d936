"""A WFDB record read with `from_wfdb(..., return_tensors="pt")` feeds `get_ecg_features` directly (the README's
recipe); the numpy default is accepted or refused with an error that names return_tensors='pt'."""

from __future__ import annotations

import torch

from data_fixtures import _wrsamp, synthetic_ecg
from dbeta_hf import DBetaECGFeatureExtractor, DBetaModel
from dbeta_hf.ecg_signal import CANONICAL_LEAD_NAMES
from dbeta_hf.pretraining.recipes import tiny_config


def test_from_wfdb_tensors_feed_get_ecg_features(tmp_path):
    _wrsamp(tmp_path, "r1", synthetic_ecg(), list(CANONICAL_LEAD_NAMES), 500, 1000)
    torch.manual_seed(0)
    model = DBetaModel(tiny_config()).eval()
    features = DBetaECGFeatureExtractor.from_wfdb(str(tmp_path / "r1"), return_tensors="pt")
    assert set(features) == {"ecg_values", "lead_mask"}
    with torch.no_grad():
        embeds = model.get_ecg_features(**features)
    assert embeds.shape == (1, model.config.hidden_dim) and torch.isfinite(embeds).all()
    numpy_features = DBetaECGFeatureExtractor.from_wfdb(str(tmp_path / "r1"))
    try:  # numpy input: either accepted (the same embedding) or refused naming the fix
        with torch.no_grad():
            torch.testing.assert_close(model.get_ecg_features(**numpy_features), embeds)
    except TypeError as error:
        assert "return_tensors='pt'" in str(error)
