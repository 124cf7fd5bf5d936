"""DBetaPreTrainingCollator: N3S negatives fed, MLM statistics, lead masking, dtypes and reproducibility."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dbeta_hf.pretraining.n3s import build_n3s_index_from_embeddings
from dbeta_hf.pretraining.collator import DBetaCollatorEpochCallback, DBetaPreTrainingCollator

CORPUS = [
    "sinus rhythm",
    "sinus bradycardia",
    "sinus tachycardia",
    "normal ecg",
    "atrial fibrillation with rapid ventricular response",
    "first degree av block",
    "left bundle branch block",
    "incomplete right bundle branch block",
    "left ventricular hypertrophy",
    "inferior infarct, age undetermined",
    "nonspecific st and t wave abnormality",
    "prolonged qt interval",
    "premature ventricular contractions",
    "wolff-parkinson-white pattern",
    "heart rate 54 bpm",
    "left axis deviation",
]
SAMPLES = 64  # short recordings keep the tests fast; the default 5000 is checked separately


@pytest.fixture(scope="module")
def index():
    emb = torch.randn(len(CORPUS), 8, generator=torch.Generator().manual_seed(0))
    return build_n3s_index_from_embeddings(CORPUS, emb, k=4, progress=False)


def make_rows(n, samples=SAMPLES, seed=0, with_id=False, reports=None):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        # values away from 0 so that a zeroed lead is recognisable; stored as float16 millivolts
        ecg = (rng.uniform(0.1, 2.0, size=(12, samples)) * rng.choice([-1, 1], size=(12, samples))).astype(np.float16)
        report = reports[i % len(reports)] if reports else CORPUS[int(rng.integers(len(CORPUS)))].upper()
        row = {"ecg": ecg, "report": report}
        if with_id:
            row["idx"] = i
        rows.append(row)
    return rows


def unmasked(batch):
    """The token ids that were fed before MLM masking."""
    return torch.where(batch["mlm_labels"] != -100, batch["mlm_labels"], batch["input_ids"])


def test_round_trip_of_corpus_through_tokenizer(tiny_tokenizer):
    for text in CORPUS:  # the tests below decode the fed texts and compare them with reports
        assert tiny_tokenizer.decode(tiny_tokenizer(text).input_ids, skip_special_tokens=True) == text


def test_shapes_and_dtypes(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    batch = collator(make_rows(6))
    assert set(batch) == {"ecg_values", "input_ids", "attention_mask", "mlm_labels", "match_labels", "mlm_positions"}
    assert batch["ecg_values"].shape == (6, 12, SAMPLES) and batch["ecg_values"].dtype == torch.float32
    length = batch["input_ids"].shape[1]
    for key in ("input_ids", "attention_mask", "mlm_labels"):
        assert batch[key].shape == (6, length) and batch[key].dtype == torch.long
    assert batch["match_labels"].shape == (6,) and batch["match_labels"].dtype == torch.long
    assert batch["mlm_positions"].dtype == torch.long and batch["mlm_positions"].shape[0] == 6
    # every row ends with </s> (id 1) at its last real position
    last = batch["attention_mask"].sum(1) - 1
    assert torch.equal(unmasked(batch)[torch.arange(6), last], torch.ones(6, dtype=torch.long))


def test_default_length_and_float16_conversion(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, lead_mask_prob=0.0)
    rows = make_rows(2, samples=5100)
    batch = collator(rows)
    assert batch["ecg_values"].shape == (2, 12, 5000)  # cropped to num_samples
    expected = torch.from_numpy(np.stack([r["ecg"][:, :5000] for r in rows]).astype(np.float32))
    assert torch.equal(batch["ecg_values"], expected)  # float16 -> float32 exactly, no scaling


def test_ecg_input_types(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, lead_mask_prob=0.0)
    base = make_rows(3)
    ref = collator(base)["ecg_values"]
    variants = [
        [{"ecg": torch.from_numpy(r["ecg"]), "report": r["report"]} for r in base],
        [{"ecg": r["ecg"].astype(np.float64).tolist(), "report": r["report"]} for r in base],
        [{"ecg": r["ecg"].astype(np.float32), "report": r["report"]} for r in base],
    ]
    for rows in variants:
        assert torch.equal(collator(rows)["ecg_values"], ref)
    ints = [{"ecg": np.full((12, SAMPLES), 3, dtype=np.int16), "report": "normal ecg"}]
    assert collator(ints)["ecg_values"].unique().tolist() == [3.0]


def test_ecg_input_errors(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    with pytest.raises(ValueError, match="fewer than num_samples"):
        collator([{"ecg": np.zeros((12, SAMPLES - 1), np.float16), "report": "normal ecg"}])
    with pytest.raises(ValueError, match="transpose"):
        collator([{"ecg": np.zeros((SAMPLES, 12), np.float16), "report": "normal ecg"}])
    bad = make_rows(3)
    bad[1]["ecg"][3, 5] = np.nan
    with pytest.raises(ValueError, match=r"ECG item 1 contains NaN or infinite values in lead\(s\) aVR"):
        collator(bad)
    with pytest.raises(KeyError, match="remove_unused_columns=False"):
        collator([{"ecg": np.zeros((12, SAMPLES))}])
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


@pytest.mark.parametrize("batch_size", [2, 7, 8, 33])
def test_number_of_negatives_follows_official_rule(tiny_tokenizer, index, batch_size):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    seen = set()
    for seed in range(12):
        rows = make_rows(batch_size, seed=seed)
        batch = collator(rows)
        # replay the batch generator: the first draw is u of int(B * 0.5 + u)
        reports = [r["report"].lower() for r in rows]
        ecgs, _ = collator._extract_ecgs(rows)
        u = torch.rand((), generator=collator._batch_generator(rows, reports, ecgs), dtype=torch.float64).item()
        negatives = int((batch["match_labels"] == 0).sum())
        assert negatives == int(batch_size * 0.5 + u)
        seen.add(negatives)
    if batch_size % 2 == 0:
        assert seen == {batch_size // 2}
    else:
        assert seen == {batch_size // 2, batch_size // 2 + 1}


def test_negative_fraction_zero_and_one(tiny_tokenizer, index):
    rows = make_rows(9)
    none = DBetaPreTrainingCollator(tiny_tokenizer, index, negative_fraction=0.0, num_samples=SAMPLES)(rows)
    assert none["match_labels"].tolist() == [1] * 9
    every = DBetaPreTrainingCollator(tiny_tokenizer, index, negative_fraction=1.0, num_samples=SAMPLES)(rows)
    assert every["match_labels"].tolist() == [0] * 9


def test_negative_texts_are_fed(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    rows = make_rows(64, seed=3)
    batch = collator(rows)
    fed = tiny_tokenizer.batch_decode(unmasked(batch), skip_special_tokens=True)
    labels = batch["match_labels"].tolist()
    assert labels.count(0) == 32
    for row, text, label in zip(rows, fed, labels):
        own = row["report"].lower()
        if label == 1:
            assert text == own
        else:
            assert text != own and text in index.candidates(own)


def test_in_batch_negatives_without_index(tiny_tokenizer):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, None, num_samples=SAMPLES)
    rows = make_rows(40, seed=4)
    batch = collator(rows)
    own = [r["report"].lower() for r in rows]
    fed = tiny_tokenizer.batch_decode(unmasked(batch), skip_special_tokens=True)
    labels = batch["match_labels"].tolist()
    assert labels.count(0) == 20
    for text, mine, label in zip(fed, own, labels):
        assert (text == mine) == (label == 1)
        assert text in own  # another row's report

    same = make_rows(6, reports=["normal ecg"])
    with pytest.warns(UserWarning, match="no row with a different report"):
        batch = collator(same)
    assert batch["match_labels"].tolist() == [1] * 6
    assert collator.stats["negatives_without_candidate"] == 3


def test_missing_report_raises_or_falls_back(tiny_tokenizer, index):
    rows = make_rows(8, seed=5)
    rows[2]["report"] = "complete heart block"  # not in the index
    strict = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    with pytest.raises(KeyError, match="build_n3s_index"):
        strict(rows)
    lenient = DBetaPreTrainingCollator(
        tiny_tokenizer, index, num_samples=SAMPLES, missing_report="in_batch", negative_fraction=1.0
    )
    with pytest.warns(UserWarning, match="not in the N3S index"):
        batch = lenient(rows)
    assert lenient.stats["missing_reports"] == 1
    assert batch["match_labels"].tolist() == [0] * 8
    fed = tiny_tokenizer.batch_decode(unmasked(batch), skip_special_tokens=True)
    others = {r["report"].lower() for i, r in enumerate(rows) if i != 2} - {"complete heart block"}
    assert fed[2] in others


def test_mlm_statistics_on_a_large_batch(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(
        tiny_tokenizer, index, num_samples=4, negative_fraction=0.0, lead_mask_prob=0.0
    )
    rows = make_rows(2000, samples=4, seed=6)
    batch = collator(rows)
    reference = tiny_tokenizer(
        [r["report"].lower() for r in rows], padding="longest", return_tensors="pt"
    )["input_ids"]
    assert torch.equal(unmasked(batch), reference)

    labels, inputs = batch["mlm_labels"], batch["input_ids"]
    special = torch.isin(reference, torch.tensor(tiny_tokenizer.all_special_ids))
    selected = labels != -100
    assert not bool((selected & special).any())  # never pad, </s>, <unk> or sentinels
    assert torch.equal(labels[selected], reference[selected])  # labels are the original ids
    assert torch.equal(inputs[~selected], reference[~selected])  # unselected tokens untouched
    rate = selected.sum().item() / (~special).sum().item()
    assert rate == pytest.approx(0.25, abs=0.015)

    n = selected.sum().item()
    to_mask = (inputs[selected] == 400).sum().item() / n
    kept = (inputs[selected] == reference[selected]).sum().item() / n
    replaced = 1 - to_mask - kept
    assert to_mask == pytest.approx(0.8, abs=0.02)
    assert replaced == pytest.approx(0.1, abs=0.015)
    assert kept == pytest.approx(0.1, abs=0.015)
    random_ids = inputs[selected & (inputs != 400) & (inputs != reference)]
    assert not bool(torch.isin(random_ids, torch.tensor(tiny_tokenizer.all_special_ids)).any())
    assert int(random_ids.max()) < len(tiny_tokenizer)


def test_sentinels_in_text_are_never_selected(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(
        tiny_tokenizer, None, num_samples=4, negative_fraction=0.0, mlm_probability=1.0
    )
    rows = [{"ecg": np.ones((12, 4)), "report": "sinus rhythm <extra_id_5> normal ecg"}] * 4
    batch = collator(rows)
    ids = unmasked(batch)
    assert bool((ids == 405).any())
    special = torch.isin(ids, torch.tensor(tiny_tokenizer.all_special_ids))
    assert bool((batch["mlm_labels"][special] == -100).all())
    assert bool((batch["mlm_labels"][~special] != -100).all())  # probability 1: every regular token


def test_lead_masking(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, return_lead_mask=True)
    rows = make_rows(300, seed=7)
    batch = collator(rows)
    ecg, kept = batch["ecg_values"], batch["lead_mask"]
    zeroed = ~kept  # lead_mask follows the feature extractor's convention: True = lead present
    assert zeroed.shape == (300, 12) and zeroed.dtype == torch.bool
    assert zeroed.float().mean().item() == pytest.approx(0.5, abs=0.03)
    original = torch.from_numpy(np.stack([r["ecg"] for r in rows]).astype(np.float32))
    assert bool((ecg[zeroed] == 0).all()) and not bool(torch.signbit(ecg[zeroed]).any())
    assert torch.equal(ecg[~zeroed], original[~zeroed])
    assert bool((original != 0).all())
    # independent per row: the zeroed-lead patterns are not all the same
    assert len({tuple(row.tolist()) for row in zeroed}) > 200


def test_determinism_seeds_and_epochs(tiny_tokenizer, index):
    rows = make_rows(16, seed=8)

    def run(**kwargs):
        return DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, **kwargs)(rows)

    a, b, c = run(seed=1), run(seed=1), run(seed=2)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert any(not torch.equal(a[key], c[key]) for key in ("ecg_values", "match_labels", "mlm_labels"))

    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, seed=1)
    first = collator(rows)
    assert torch.equal(first["ecg_values"], a["ecg_values"])  # no hidden state between calls
    collator.set_epoch(1)
    other = collator(rows)
    assert not torch.equal(first["ecg_values"], other["ecg_values"])

    # an id column, when present, drives the seed instead of the content
    with_ids = make_rows(16, seed=8, with_id=True)
    x = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)(with_ids)
    shifted = [dict(r, idx=r["idx"] + 100) for r in with_ids]
    y = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)(shifted)
    assert not torch.equal(x["ecg_values"], y["ecg_values"])
    numpy_ids = [dict(r, idx=np.int64(r["idx"])) for r in with_ids]
    z = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)(numpy_ids)
    assert torch.equal(x["ecg_values"], z["ecg_values"])


class RowDataset(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


@pytest.mark.parametrize("with_id", [False, True])
def test_dataloader_workers_do_not_change_batches(tiny_tokenizer, index, with_id):
    dataset = RowDataset(make_rows(40, seed=9, with_id=with_id))
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, seed=3)
    loaders = [
        DataLoader(dataset, batch_size=8, shuffle=False, num_workers=workers, collate_fn=collator)
        for workers in (0, 2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork in a multi-threaded process (Python 3.12+)
        serial, parallel = (list(loader) for loader in loaders)
    assert len(serial) == len(parallel) == 5
    for one, two in zip(serial, parallel):
        assert set(one) == set(two)
        for key in one:
            assert torch.equal(one[key], two[key]), key


def test_from_config_and_validation(tiny_tokenizer, index):
    from dbeta_hf import DBetaConfig

    config = DBetaConfig(ecg_config={"num_samples": 2500})
    settings = dict(negative_fraction=0.25, mlm_probability=0.15, lead_mask_prob=0.3, max_length=16)
    collator = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, index, seed=4, **settings)
    assert (collator.negative_fraction, collator.mlm_probability, collator.lead_mask_prob) == (0.25, 0.15, 0.3)
    assert (collator.max_length, collator.num_samples, collator.seed) == (16, 2500, 4)
    assert collator.mask_token == "<extra_id_0>" and collator.mask_token_id == 400
    long_reports = ["atrial fibrillation with rapid ventricular response " * 4, "normal ecg " * 10]
    long_rows = make_rows(2, samples=2500, reports=long_reports)
    batch = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, **settings)(long_rows)  # in-batch negatives
    assert batch["input_ids"].shape == (2, 16)  # truncated to max_length, </s> kept
    assert batch["input_ids"][:, -1].tolist() == [1, 1]

    with pytest.raises(ValueError, match="not a token of this tokenizer"):
        DBetaPreTrainingCollator(tiny_tokenizer, index, mask_token="[MASK]")
    with pytest.raises(ValueError, match="mlm_probability"):
        DBetaPreTrainingCollator(tiny_tokenizer, index, mlm_probability=1.5)
    with pytest.raises(ValueError, match="missing_report"):
        DBetaPreTrainingCollator(tiny_tokenizer, index, missing_report="skip")


def test_epoch_callback_sets_epoch(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    callback = DBetaCollatorEpochCallback(collator)
    callback.on_epoch_begin(None, types.SimpleNamespace(epoch=1.9999999), None)
    assert collator.epoch == 2


def test_rows_from_a_datasets_table_in_every_format(tiny_tokenizer, index):
    from datasets import Array2D, Dataset, Features, Value

    rows = make_rows(6, samples=SAMPLES, seed=10)
    table = Dataset.from_dict(
        {
            "study_id": list(range(100, 106)),
            "ecg": [r["ecg"] for r in rows],
            "report": [r["report"] for r in rows],
        },
        features=Features(
            {"study_id": Value("int64"), "ecg": Array2D((12, SAMPLES), "float16"), "report": Value("string")}
        ),
    )
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    batches = [collator(list(table.with_format(fmt))) for fmt in (None, "numpy", "torch")]
    for other in batches[1:]:
        for key in batches[0]:
            assert torch.equal(batches[0][key], other[key]), key
    expected = torch.from_numpy(np.stack([r["ecg"] for r in rows]).astype(np.float32))
    kept = batches[0]["ecg_values"] != 0
    assert torch.equal(batches[0]["ecg_values"][kept], expected[kept])


def test_same_report_positives_label_identical_reports(tiny_tokenizer):
    from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator, same_report_labels

    labels = same_report_labels(["sinus rhythm.", "sinus rhythm.", "atrial fibrillation."],
                                ["sinus rhythm.", "atrial fibrillation.", "sinus rhythm."])
    assert labels.tolist() == [[1, -1, 1], [1, -1, 1], [-1, 1, -1]]
    rows = [{"ecg": np.zeros((12, 5000), dtype=np.float16), "report": r, "record_id": i}
            for i, r in enumerate(["Sinus rhythm.", "sinus rhythm.", "atrial fibrillation.", "sinus bradycardia."])]
    collator = DBetaPreTrainingCollator(tiny_tokenizer, negative_fraction=0.5, same_report_positives=True, seed=3)
    out = collator(rows)
    match = out["match_labels"]
    ets = out["ets_labels"]
    assert ets.shape == (4, 4)
    assert torch.equal(torch.diagonal(ets), 2.0 * match.float() - 1.0)  # the diagonal keeps the official rule
    if match[0] == 1 and match[1] == 1:  # rows 0 and 1 share their report after normalization
        assert ets[0, 1] == 1 and ets[1, 0] == 1
    assert "ets_labels" not in DBetaPreTrainingCollator(tiny_tokenizer, seed=3)(rows)


def test_mlm_positions_list_exactly_the_labelled_positions(tiny_tokenizer, index):
    collator = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES)
    batch = collator(make_rows(16, seed=5))
    labels, positions = batch["mlm_labels"], batch["mlm_positions"]
    assert positions.shape[0] == 16 and positions.shape[1] == int((labels != -100).sum(1).max())
    for row in range(16):
        expected = torch.nonzero(labels[row] != -100).flatten().tolist()
        got = [p for p in positions[row].tolist() if p >= 0]
        assert got == expected
        assert all(p == -1 for p in positions[row].tolist()[len(expected):])
    assert "mlm_positions" not in DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES,
                                                            return_mlm_positions=False)(make_rows(4))


def test_mem_noise_from_the_batch_generator(tiny_tokenizer, index):
    """`mem_noise_tokens`: the MEM noise is drawn last from the batch's generator, so it repeats with the batch and the
    other draws are those of a collator without it."""
    from dbeta_hf.pretraining.recipes import tiny_config

    config = tiny_config(num_samples=SAMPLES)
    rows = make_rows(4)
    with_noise = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, index, mem_noise=True)
    first, again = with_noise(rows), with_noise(rows)
    assert first["noise"].shape == (4, config.num_ecg_tokens) and torch.equal(first["noise"], again["noise"])
    plain = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, index)(rows)
    assert "noise" not in plain
    for key in plain:
        assert torch.equal(plain[key], first[key]), key


def test_statements_split_drop_and_subset_labels():
    from dbeta_hf.pretraining.collator import drop_statements, split_statements, statement_subset_labels

    assert split_statements("sinus rhythm. left axis deviation. borderline ecg.") == [
        "sinus rhythm.", "left axis deviation.", "borderline ecg."]
    assert split_statements("sinus rhythm; normal ecg") == ["sinus rhythm;", "normal ecg"]
    assert split_statements("sinus rhythm normal ecg") == ["sinus rhythm normal ecg"]
    assert split_statements("qt 0.45 s. normal ecg.") == ["qt 0.45 s.", "normal ecg."]  # no space after the dot
    reports = ["sinus rhythm. normal ecg.", "sinus rhythm. right bundle branch block. abnormal ecg.",
               "atrial fibrillation. abnormal ecg."]
    texts = ["sinus rhythm.", "abnormal ecg.", "sinus rhythm. normal ecg."]
    # text j is a positive of ECG i when all of its statements are in report i
    assert statement_subset_labels(reports, texts).tolist() == [[1, -1, 1], [1, 1, -1], [-1, 1, -1]]
    assert statement_subset_labels(reports, reports).tolist() == [[1, -1, -1], [-1, 1, -1], [-1, -1, 1]]

    generator = torch.Generator().manual_seed(0)
    assert drop_statements(reports, 0.0, generator) == reports
    dropped = drop_statements(reports * 50, 0.5, torch.Generator().manual_seed(0))
    assert all(d for d in dropped)  # at least one statement survives
    for original, view in zip(reports * 50, dropped):
        assert set(split_statements(view)) <= set(split_statements(original))
    kept = sum(len(split_statements(v)) for v in dropped) / sum(len(split_statements(r)) for r in reports * 50)
    assert 0.45 < kept < 0.7  # half dropped, plus the one kept when all were drawn away
    assert drop_statements(reports * 50, 1.0, torch.Generator().manual_seed(0)) != reports * 50
    assert all(len(split_statements(v)) == 1 for v in drop_statements(reports, 1.0, generator))


def test_statement_dropout_gives_an_ets_view_and_subset_labels(tiny_tokenizer):
    from dbeta_hf.pretraining.collator import split_statements, statement_subset_labels

    reports = ["sinus rhythm. normal ecg.", "sinus bradycardia. first degree av block. borderline ecg.",
               "atrial fibrillation. left bundle branch block. abnormal ecg.", "sinus tachycardia. normal ecg."]
    rows = make_rows(16, seed=2, reports=reports, with_id=True)
    plain = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=SAMPLES, seed=1)(rows)
    collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=SAMPLES, seed=1, statement_dropout=0.5)
    batch = collator(rows)
    for key in plain:  # the view is drawn last: every other output is unchanged
        assert torch.equal(plain[key], batch[key]), key
    ids, mask, labels = batch["ets_input_ids"], batch["ets_attention_mask"], batch["ets_labels"]
    assert ids.shape == mask.shape and ids.shape[0] == 16 and labels.shape == (16, 16)
    full_lengths = batch["attention_mask"].sum(1)
    assert bool((mask.sum(1) <= full_lengths).all()) and bool((mask.sum(1) < full_lengths).any())
    matched = batch["match_labels"].bool()
    assert bool((torch.diagonal(labels)[matched] == 1).all())  # a piece of the own report is always true of the ECG
    assert torch.equal(collator(rows)["ets_input_ids"], ids)  # seeded like the rest of the batch

    # the view is the tokenised fed text with statements dropped, and the labels follow the subset rule
    views = tiny_tokenizer.batch_decode(ids, skip_special_tokens=True)
    fed = tiny_tokenizer.batch_decode(torch.where(batch["mlm_labels"] >= 0, batch["mlm_labels"], batch["input_ids"]),
                                      skip_special_tokens=True)
    for view, text in zip(views, fed):
        assert view and set(split_statements(view)) <= set(split_statements(text)), (view, text)
    assert torch.equal(labels, statement_subset_labels([r["report"] for r in rows], views))
    with pytest.raises(ValueError, match="statement_dropout"):
        DBetaPreTrainingCollator(tiny_tokenizer, statement_dropout=1.5)


def test_mask_leads_returns_the_leads_kept():
    from dbeta_hf.pretraining.collator import mask_leads

    ecgs = np.ones((40, 12, 8), dtype=np.float32)
    lead_mask = mask_leads(ecgs, 0.5, torch.Generator().manual_seed(0))
    assert lead_mask.dtype == torch.bool and lead_mask.shape == (40, 12)
    assert 0 < int(lead_mask.sum()) < 480
    assert bool((torch.from_numpy(ecgs).amax(-1) == lead_mask.float()).all())  # True = present, False = zeroed
    assert bool(mask_leads(ecgs, 0.0, torch.Generator()).all()) and not bool(mask_leads(ecgs, 1.0, torch.Generator()).any())


def test_a_processor_or_its_tokenizer_give_the_same_batches(tiny_tokenizer, tiny_tokenizer_path, index):
    from dbeta_hf import DBetaProcessor

    rows = make_rows(8, seed=11)
    processor = DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path), num_samples=SAMPLES)
    with_processor = DBetaPreTrainingCollator(processor, index, return_lead_mask=True)
    with_tokenizer = DBetaPreTrainingCollator(tiny_tokenizer, index, num_samples=SAMPLES, return_lead_mask=True)
    assert with_processor.processor is processor and with_processor.num_samples == SAMPLES
    assert with_tokenizer.processor.feature_extractor.num_samples == SAMPLES
    one, two = with_processor(rows), with_tokenizer(rows)
    for key in one:
        assert torch.equal(one[key], two[key]), key
    with pytest.raises(ValueError, match="makes 64 samples per lead"):
        DBetaPreTrainingCollator(processor, index, num_samples=5000)
    with pytest.raises(TypeError, match="DBetaProcessor or a T5 tokenizer"):
        DBetaPreTrainingCollator(object(), index)


def test_lead_mask_combines_recorded_and_kept_leads(tiny_tokenizer, caplog):
    import logging

    rows = make_rows(4, seed=12, with_id=True)
    rows[2]["ecg"] = np.zeros_like(rows[2]["ecg"])  # no signal at all: the feature extractor marks every lead absent
    collator = DBetaPreTrainingCollator(tiny_tokenizer, num_samples=SAMPLES, lead_mask_prob=0.0, return_lead_mask=True)
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        batch = collator(rows)
    assert "ECG item 2 is all zeros" in caplog.text
    assert batch["lead_mask"].tolist() == [[True] * 12, [True] * 12, [False] * 12, [True] * 12]
