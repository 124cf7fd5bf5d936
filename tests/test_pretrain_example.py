"""examples/pretrain.py: the embedded synthetic default runs end to end and saves a loadable model + processor."""

from __future__ import annotations

import pytest
from helpers import load_example

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_embedded_default_end_to_end(tmp_path):
    from transformers import AutoProcessor

    from dbeta_hf import DBetaForPreTraining, DBetaModel, DBetaProcessor

    example = load_example("pretrain")
    out = tmp_path / "demo"
    summary = example.main([
        "--output_dir", str(out), "--synthetic_records", "48", "--synthetic_eval_records", "24",
        "--max_steps", "4", "--logging_steps", "2", "--eval_steps", "4", "--per_device_train_batch_size", "8",
    ])
    first, last = summary["first_log"], summary["last_log"]
    for name in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss", "mlm_accuracy", "etm_accuracy"):
        assert name in first and name in last
    assert 0.0 <= summary["zero_shot"]["macro_auroc"] <= 1.0
    assert set(summary["zero_shot"]["per_class"]) <= {"SBRAD", "SR", "STACH", "AFIB", "1AVB", "BBB"}
    assert isinstance(DBetaForPreTraining.from_pretrained(out), DBetaForPreTraining)
    assert isinstance(DBetaModel.from_pretrained(out), DBetaModel)
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(processor, DBetaProcessor)
    assert (out / "n3s_index" / "n3s_config.json").is_file()


def test_config_overrides_are_parsed():
    example = load_example("pretrain")
    assert example.parse_config_overrides("a=1,b=true,c=-5e-1,d=none,e=text") == {
        "a": 1, "b": True, "c": -0.5, "d": None, "e": "text"}
    with pytest.raises(ValueError, match="key=value"):
        example.parse_config_overrides("oops")


def test_real_data_path_with_a_local_t5(tmp_path, tiny_tokenizer):
    """The non-synthetic path: a saved DatasetDict, a fresh model from a pretrained T5 (here a tiny local one
    standing in for google/flan-t5-base), an N3S index built with a T5 encoder and saved on first use."""
    import datasets
    from transformers import T5Config, T5EncoderModel

    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.n3s import N3SIndex
    from dbeta_hf.synthetic import make_synthetic_corpus

    t5_dir = tmp_path / "tiny-t5"
    T5EncoderModel(T5Config(vocab_size=len(tiny_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                            feed_forward_proj="gated-gelu")).save_pretrained(t5_dir)
    tiny_tokenizer.save_pretrained(t5_dir)
    data_dir = tmp_path / "arrow"
    datasets.DatasetDict({"train": make_synthetic_corpus(24, seed=0),
                          "validation": make_synthetic_corpus(8, seed=1)}).save_to_disk(str(data_dir))
    out = tmp_path / "run"
    example = load_example("pretrain")
    args = ["--dataset_path", str(data_dir), "--text_encoder", str(t5_dir), "--n3s_encoder", str(t5_dir),
            "--n3s_k", "4", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true",
            "--config_overrides", "hidden_dim=32,num_heads=4,num_top_layer=1,mem_layer=0,mem_decoder_hidden_dim=16,"
                                  "mem_decoder_num_layers=1,mem_decoder_num_heads=2"]
    summary = example.main(args)
    assert "zero_shot" not in summary and "mlm_loss" in summary["last_log"]
    model = DBetaForPreTraining.from_pretrained(out)
    assert model.config.text_config.d_model == 32 and model.config.vocab_size == len(tiny_tokenizer)
    index = N3SIndex.from_pretrained(out / "n3s_index")
    assert index.k == 4 and len(index) > 4
