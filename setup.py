from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="dbeta_hf",
    version="0.1.0",
    description="Hugging Face-native D-BETA: ECG-text foundation model (masked ECG-text auto-encoder with ETS and N3S)",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["dbeta_hf", "dbeta_hf.*"]),
    package_data={"dbeta_hf": [
        "resources/*.json", "resources/*.csv", "resources/*.md",
        # the `evaluate` metric modules: a folder per metric with its script, card, Space app and requirements
        "evaluation/metric_modules/*/*.py", "evaluation/metric_modules/*/*.md", "evaluation/metric_modules/*/*.txt",
    ]},
    python_requires=">=3.11",
    install_requires=[
        # torch is deliberately unpinned beyond a floor: install the wheel you want first
        # (CI: `pip install torch==2.13.0`, a local CPU build).
        "torch>=2.6",
        "transformers>=5.0,<6",
        "tokenizers>=0.22",
        "datasets>=3.0",
        "accelerate>=1.1",
        "evaluate>=0.4",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "wfdb>=4.1",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.4",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "h5py>=3.9", "matplotlib>=3.8"],
        "plots": ["matplotlib>=3.8"],
        "hdf5": ["h5py>=3.9"],
        "faiss": ["faiss-cpu>=1.8"],
        "synthetic": ["deepfake-ecg>=1.1"],
    },
    entry_points={"console_scripts": ["dbeta-convert=dbeta_hf.conversion.convert_original_checkpoint:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
)
