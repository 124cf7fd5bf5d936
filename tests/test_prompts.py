"""Zero-shot class descriptions: coverage of every task, per-task meanings, overrides and errors."""

from __future__ import annotations

import json

import pytest

from dbeta_hf.evaluation.prompts import (
    DEFAULT_CLASS_DESCRIPTIONS_PATH,
    MissingClassDescriptionError,
    available_tasks,
    class_descriptions,
    load_class_descriptions,
    task_class_names,
)

# Reference spec F.1 (label-column order) and the synthetic corpus.
EXPECTED_TASKS = {
    "ptbxl_super": ["HYP", "NORM", "MI", "CD", "STTC"],
    "ptbxl_sub": ["AMI", "LAFB/LPFB", "LVH", "STTC", "IMI", "SEHYP", "CRBBB", "WPW", "LAO/LAE", "NORM", "ISC", "AVB",
                  "RAO/RAE", "LMI", "ISCI", "ISCA", "NST", "CLBBB", "ILBBB", "IRBBB", "PMI", "RVH", "IVCD"],
    "ptbxl_form": ["PAC", "DIG", "HVOLT", "STD", "LPR", "QWAVE", "VCLVH", "NDT", "TAB", "LOWT", "ABQRS", "LNGQT",
                   "PRC(S)", "NT", "STE", "NST", "PVC", "INVT", "LVOLT"],
    "ptbxl_rhythm": ["SVARR", "BIGU", "STACH", "SARRH", "SBRAD", "TRIGU", "AFIB", "SR", "SVTAC", "PSVT", "AFLT", "PACE"],
    "cpsc2018": ["AFIB", "VPC", "NORM", "1AVB", "CRBBB", "STE", "PAC", "CLBBB", "STD"],
    "csn": ["AQW", "UW", "SR", "WPW", "2AVB", "AT", "VB", "ARS", "STTC", "SA", "STE", "VPB", "TWO", "STTU", "ALS", "APB",
            "2AVB1", "PRIE", "CCR", "CR", "AF", "AVB", "QTIE", "LBBB", "VEB", "SVT", "RBBB", "1AVB", "STDD", "MI", "AFIB",
            "TWC", "PWC", "ERV", "RVH", "LVH", "ST", "JEB"],
    "code15": ["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"],
}


def test_task_class_lists_match_the_reference():
    from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES

    assert set(available_tasks()) == set(EXPECTED_TASKS) | {"synthetic"}
    for task, codes in EXPECTED_TASKS.items():
        assert task_class_names(task) == codes
    assert task_class_names("synthetic") == SYNTHETIC_CLASSES
    assert [len(task_class_names(t)) for t in EXPECTED_TASKS] == [5, 23, 19, 12, 9, 38, 6]
    # aliases
    assert task_class_names("icbeb") == EXPECTED_TASKS["cpsc2018"]
    assert task_class_names("chapman") == EXPECTED_TASKS["csn"]
    with pytest.raises(ValueError, match="unknown task"):
        task_class_names("ptbxl_everything")


@pytest.mark.parametrize("task", sorted(EXPECTED_TASKS) + ["synthetic"])
def test_every_class_of_every_task_has_a_description(task):
    codes = task_class_names(task)
    texts = class_descriptions(codes, task=task)
    assert len(texts) == len(codes)
    for text in texts:
        name, _, definition = text.partition(". ")
        assert text == text.lower() and text.endswith(".")
        assert name and len(definition.split()) >= 5, text  # "<name>. <definition>."
    assert len(set(texts)) == len(texts)  # distinct prompts within a task


def test_codes_whose_meaning_depends_on_the_task():
    assert class_descriptions(["AF"], task="csn")[0].startswith("atrial flutter.")
    assert class_descriptions(["AF"], task="code15")[0].startswith("atrial fibrillation.")
    # ambiguous without a task: an error that says so, not a guess
    with pytest.raises(MissingClassDescriptionError, match="depends on the task"):
        class_descriptions(["AF"])
    # CSN "STE" (ST interval abnormality) vs the ST elevation of CPSC2018 / PTB-XL form
    assert class_descriptions(["STE"], task="cpsc2018")[0].startswith("st elevation.")
    assert not class_descriptions(["STE"], task="csn")[0].startswith("st elevation.")
    # the PTB-XL superclass STTC is broader than the subclass
    assert class_descriptions(["STTC"], task="ptbxl_super") != class_descriptions(["STTC"], task="ptbxl_sub")
    # the synthetic task uses the corpus reports' wording
    assert class_descriptions(["1AVB"], task="synthetic")[0].startswith("first degree av block.")
    assert class_descriptions(["1AVB"], task="cpsc2018")[0].startswith("first degree atrioventricular block.")


def test_descriptions_are_our_own_text():
    official = "sinus bradycardia. slower-than-normal heart rate originating in the sinoatrial node, usually below 60 bpm."
    data = load_class_descriptions()
    assert official not in set(data["descriptions"].values())
    assert all(official != text for o in data["task_overrides"].values() for text in o.values())


def test_lookup_ignores_case_and_ptbxl_underscores():
    assert class_descriptions(["ISC_", "_AVB", "nst_", "afib"]) == class_descriptions(["ISC", "AVB", "NST", "AFIB"])


def test_overrides_from_a_dict():
    texts = class_descriptions(["SR", "MYCLASS"], overrides={"MYCLASS": "My own class. A description.", "SR": "sr. mine."})
    assert texts == ["sr. mine.", "my own class. a description."]  # lower-cased like the official flow
    assert class_descriptions(["MYCLASS"], overrides={"MYCLASS": "Keep Case."}, lowercase=False) == ["Keep Case."]
    # structured overrides, with a task-specific text
    structured = {"descriptions": {"X": "x. global."}, "task_overrides": {"csn": {"X": "x. csn only."}}}
    assert class_descriptions(["X"], overrides=structured) == ["x. global."]
    assert class_descriptions(["X"], task="csn", overrides=structured) == ["x. csn only."]


def test_overrides_from_a_json_file(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"MYCLASS": "my own class description.", "AFIB": "af. my af text."}))
    assert class_descriptions(["MYCLASS", "AFIB", "SR"], overrides=str(flat)) == [
        "my own class description.",
        "af. my af text.",
        class_descriptions(["SR"])[0],
    ]
    assert load_class_descriptions(flat)["descriptions"]["MYCLASS"] == "my own class description."
    # a file in the shipped structure works too (e.g. an edited copy of the shipped file)
    data = load_class_descriptions()
    data["descriptions"]["SR"] = "sinus rhythm. edited."
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    assert class_descriptions(["SR"], overrides=edited) == ["sinus rhythm. edited."]
    with pytest.raises(FileNotFoundError):
        class_descriptions(["SR"], overrides=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"SR": 3}))
    with pytest.raises(ValueError, match="strings"):
        class_descriptions(["SR"], overrides=bad)


def test_missing_classes_are_a_clear_error():
    with pytest.raises(MissingClassDescriptionError) as info:
        class_descriptions(["SR", "NOT_A_CLASS", "ALSO_MISSING"], task="cpsc2018")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, ValueError)
    assert err.missing == ["NOT_A_CLASS", "ALSO_MISSING"]
    message = str(err)
    assert "NOT_A_CLASS" in message and "ALSO_MISSING" in message and "overrides" in message
    assert not message.startswith(('"', "'"))  # readable, not a KeyError repr


def test_loaded_structure_is_a_fresh_copy():
    data = load_class_descriptions()
    assert set(data) == {"descriptions", "task_overrides", "tasks"}
    data["descriptions"]["SR"] = "changed."
    assert load_class_descriptions()["descriptions"]["SR"] != "changed."
    assert DEFAULT_CLASS_DESCRIPTIONS_PATH.is_file()
