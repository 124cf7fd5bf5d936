"""The evaluation commands read the Arrow datasets of `python -m dbeta_hf.data build` (--dataset_path) as well as
the raw folders, with the same numbers."""

from __future__ import annotations

import argparse

import data_fixtures as fx
import pytest
from helpers import load_example

from dbeta_hf.data.__main__ import main as build_main
from dbeta_hf.evaluation.cli import add_common_arguments, dataset_paths_from_args


@pytest.fixture(scope="module")
def cpsc_raw_and_built(tmp_path_factory):
    root, _ = fx.write_physionet_challenge(tmp_path_factory.mktemp("cpsc"), fx.default_cpsc_records(), "cpsc2018")
    built = tmp_path_factory.mktemp("cpsc-arrow") / "cpsc2018"
    assert build_main(["build", "cpsc2018", str(root), "-o", str(built), "-q"]) == 0
    return root, built


def test_zero_shot_reads_the_built_dataset_like_the_raw_folder(saved_model_dir, cpsc_raw_and_built, tmp_path):
    root, built = cpsc_raw_and_built
    example = load_example("zero_shot")
    common = ["--model_name_or_path", str(saved_model_dir), "--tasks", "cpsc2018", "--num_bootstrap", "20",
              "--no_progress", "--no_cache"]
    from_raw = example.main(common + ["--cpsc2018_root", str(root), "--output_dir", str(tmp_path / "raw")])
    from_arrow = example.main(common + ["--dataset_path", str(built), "--output_dir", str(tmp_path / "arrow")])
    named = example.main(common + ["--dataset-path", f"cpsc2018={built}", "--output_dir", str(tmp_path / "named")])
    raw, arrow = from_raw["tasks"]["cpsc2018"], from_arrow["tasks"]["cpsc2018"]
    assert arrow["num_samples"] == raw["num_samples"] > 0
    assert arrow["class_names"] == raw["class_names"]
    assert arrow["per_class"] == pytest.approx(raw["per_class"])
    assert named["tasks"]["cpsc2018"]["per_class"] == pytest.approx(arrow["per_class"])


@pytest.mark.parametrize("script", ["zero_shot", "linear_probe", "finetune"])
def test_every_evaluation_command_takes_dataset_path(script, cpsc_raw_and_built):
    _, built = cpsc_raw_and_built
    args = load_example(script).parse_args(["--tasks", "cpsc2018", "--dataset_path", str(built)])
    assert dataset_paths_from_args(args) == {"cpsc2018": str(built)}


def test_dataset_path_errors_name_the_fix(tmp_path, cpsc_raw_and_built):
    _, built = cpsc_raw_and_built
    parser = argparse.ArgumentParser()
    add_common_arguments(parser, default_output_dir=str(tmp_path))

    def paths(*argv):
        return dataset_paths_from_args(parser.parse_args(list(argv)))

    with pytest.raises(ValueError, match="name its task"):
        paths("--dataset_path", str(built))  # --tasks is the synthetic default: whose data is it?
    with pytest.raises(ValueError, match="add --tasks csn"):
        paths("--tasks", "cpsc2018", "--dataset_path", f"csn={built}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        paths("--tasks", "cpsc2018", "--dataset_path", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="generated, not loaded"):
        paths("--dataset_path", f"synthetic={built}")
