"""Zero-shot ECG classification with D-BETA (reference spec F.3).

Each class is described by a sentence (D-BETA's LLM-generated class descriptions, `dbeta_hf.evaluation.prompts`,
overridable with a JSON file). The description is encoded once by the text tower (T5 encoder -> projection ->
tanh pooler) and cached; every ECG by the ECG tower (`get_ecg_features`). The score of class ``c`` for ECG ``i``
is the model's ECG-text logit ``model.ecg_text_logits(ecg_embeds, text_embeds)[i, c]``, the similarity its ETS loss
trained (with the official config the **raw dot product** ``ecg_embeds[i] @ text_embeds[c]``: no normalization, no
temperature, no softmax). ``similarity="dot"`` / ``"cosine"`` score with the raw dot product / the cosine instead.

Scores are **independent per class** (multi-label): they are never normalized across classes, so adding or
removing a class does not change the other classes' scores, and each class gets its own ROC curve.

    >>> from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    >>> classifier = DBetaZeroShotClassifier.from_pretrained("outputs/dbeta-tiny-synthetic")
    >>> scores = classifier.scores(ecg_values, ["SR", "AFIB"], task="synthetic")   # (B, 2)
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import ecg_text_logits
from ..modeling_dbeta import DBetaModel
from ..processing_dbeta import DBetaProcessor, check_processor_matches_model
from .embeddings import extract_ecg_features, extract_text_features
from .metrics import bootstrap_auroc_ci, markdown_table, multilabel_auroc
from .prompts import (
    PROMPT_ENSEMBLES,
    class_prompts,
    describe_classes,
    ensemble_texts,
    load_prompt_set,
    prompt_set_record,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SIMILARITIES",
    "zero_shot_scores",
    "DBetaZeroShotClassifier",
    "evaluate_zero_shot",
    "format_zero_shot_table",
    "PAPER_ZERO_SHOT_AUROC",
]

# "model": the model's ECG-text logits (`DBetaModel.ecg_text_logits`); "dot" / "cosine": the raw dot product / the
# cosine of the embeddings, whatever the model was trained with
SIMILARITIES = ("model", "dot", "cosine")


def _check_similarity(similarity: str) -> str:
    if similarity not in SIMILARITIES:
        raise ValueError(
            f"unknown similarity {similarity!r}; choose 'model' (the model's ECG-text logits, its ETS similarity), "
            "'dot' (raw dot product) or 'cosine'"
        )
    return similarity


def zero_shot_scores(ecg_embeds: torch.Tensor, text_embeds: torch.Tensor, similarity: str = "dot",
                     model: torch.nn.Module | None = None) -> torch.Tensor:
    """(B, H) ECG embeddings x (C, H) class-description embeddings -> (B, C) float32 scores.

    ``"model"``: ``model.ecg_text_logits`` (the model's scale, bias and normalization; needs `model`);
    ``"dot"``: ``ecg_embeds @ text_embeds.T``; ``"cosine"``: the same on L2-normalized vectors.
    """
    _check_similarity(similarity)
    if similarity == "model":
        if model is None:
            raise ValueError("similarity='model' scores with the model's ECG-text logits: pass model=")
        with torch.no_grad():
            return model.ecg_text_logits(ecg_embeds, text_embeds)
    return ecg_text_logits(ecg_embeds, text_embeds, normalize=similarity == "cosine")


class DBetaZeroShotClassifier:
    """Zero-shot multi-label ECG classifier on top of a D-BETA model and its processor.

    Args:
        model: a `DBetaModel` (or `DBetaForPreTraining`); it is switched to eval mode.
        processor: the `DBetaProcessor` of the checkpoint (tokenizer + ECG feature extractor).
        similarity: ``"model"`` (default: the model's ECG-text logits, `model.ecg_text_logits`; the raw dot product
            for the official model), ``"dot"`` or ``"cosine"`` (see `zero_shot_scores`).
        task: default task of the class descriptions (``"ptbxl_super"``, ``"cpsc2018"``, ``"code15"``, ...); it
            selects task-specific descriptions where `dbeta_hf.evaluation.prompts` has them.
        descriptions: a complete prompt set replacing the built-in descriptions: a ``{label: description}``
            dict or the path of a JSON file with one (the official repository's prompt format). Every class
            scored must be covered (directly or under an alias, `dbeta_hf.evaluation.class_aliases`), otherwise
            scoring stops with an error listing the uncovered classes; the built-in texts are never mixed in.
        batch_size: ECGs / texts per forward pass.
        device: where to run the model (default: where it is).
        prompt_ensemble: how many texts stand for a class (`dbeta_hf.evaluation.prompts.ensemble_texts`):
            ``"description"`` (default, the official scoring: the description alone), ``"name+description"`` or
            ``"sentences"``; a class given a list of texts in a prompt file always uses that list. The embeddings of a
            class's texts are averaged (each L2-normalized first when the similarity normalizes), as CLIP's prompt
            ensembles; a class with a single text is scored exactly as without ensembling.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor,
        similarity: str = "model",
        task: str | None = None,
        descriptions: Mapping[str, str] | str | os.PathLike | None = None,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        autocast: bool | None = None,
        prompt_ensemble: str = "description",
    ):
        if not all(hasattr(model, name) for name in ("get_text_features", "get_ecg_features", "ecg_text_logits")):
            raise TypeError(
                f"{type(model).__name__} lacks a text or ECG tower; zero-shot needs the full model "
                "(DBetaModel.from_pretrained(path))"
            )
        if processor is not None:  # a processor saved with another ECG window would score without a word
            check_processor_matches_model(processor, model, where=type(self).__name__)
        self.model = model.eval()
        if device is not None:
            self.model.to(device)
        self.processor = processor
        self.similarity = _check_similarity(similarity)
        self.task = task
        # a prompt file is read and validated here: a missing or malformed one fails now, not at the first score
        self.prompt_set = None if descriptions is None else load_prompt_set(descriptions)
        if prompt_ensemble not in PROMPT_ENSEMBLES:
            raise ValueError(f"unknown prompt_ensemble {prompt_ensemble!r}; choose one of {', '.join(PROMPT_ENSEMBLES)}")
        self.prompt_ensemble = prompt_ensemble
        self.batch_size = int(batch_size)
        self.autocast = autocast
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, model_name_or_path: str | os.PathLike, processor=None, **kwargs) -> "DBetaZeroShotClassifier":
        """Load `DBetaModel` and `DBetaProcessor` from one folder (or Hub id), e.g. `outputs/dbeta-tiny-synthetic`."""
        model = DBetaModel.from_pretrained(model_name_or_path)
        if processor is None:
            processor = DBetaProcessor.from_pretrained(model_name_or_path)
        return cls(model, processor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ text side
    def describe(self, class_names: Sequence[str], task: str | None = None) -> list[str]:
        """The description of every class: from the classifier's prompt set when it has one (every class must be
        covered), else from the built-in descriptions of the task.

        Raises `MissingClassDescriptionError` (a `KeyError`) naming every class that has no description.
        """
        return describe_classes(class_names, task=task if task is not None else self.task, prompt_set=self.prompt_set)

    @property
    def prompt_set_info(self) -> dict[str, Any]:
        """Which prompts this classifier uses (for results files): ``{"name", "sha256"}`` or the built-in set."""
        return prompt_set_record(self.prompt_set)

    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(C, H) embeddings of `texts`; each distinct text is encoded once and cached for this classifier."""
        texts = [str(t) for t in texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if missing:
            feats = extract_text_features(
                self.model, self.processor, missing, batch_size=self.batch_size, autocast=self.autocast
            )
            for text, feat in zip(missing, feats):
                self._text_cache[text] = feat
        return torch.stack([self._text_cache[t] for t in texts])

    def class_embeddings(
        self, class_names: Sequence[str] | None = None, descriptions: Sequence[str] | None = None, task: str | None = None
    ) -> tuple[torch.Tensor, list[str | list[str]]]:
        """(C, H) class embeddings and the texts behind each: for class names (looked up) or descriptions (used
        verbatim; an item may be a list of texts). A class with several texts (`prompt_ensemble`, or a list) gets
        the mean of their embeddings; its entry in the returned texts is then the list."""
        if (class_names is None) == (descriptions is None):
            raise ValueError("pass exactly one of `class_names` (looked up in the description files) or `descriptions`")
        if class_names is not None:
            names = [class_names] if isinstance(class_names, str) else list(class_names)
            prompts = class_prompts(names, task=task if task is not None else self.task, prompt_set=self.prompt_set,
                                    ensemble=self.prompt_ensemble)
        else:
            given = [descriptions] if isinstance(descriptions, str) else list(descriptions)
            prompts = [ensemble_texts(d, self.prompt_ensemble, f"#{i}") for i, d in enumerate(given)]
        if not prompts:
            raise ValueError("no class to score")
        embeds = torch.stack([self._ensemble_embedding(texts) for texts in prompts])
        return embeds, [texts[0] if len(texts) == 1 else texts for texts in prompts]

    def _ensemble_embedding(self, texts: Sequence[str]) -> torch.Tensor:
        """One class embedding: the text's own for one text; else the mean of the texts' embeddings, each
        L2-normalized first when the scoring normalizes (cosine, or a model trained on normalized embeddings)."""
        embeds = self.encode_texts(texts)
        if len(texts) == 1:
            return embeds[0]
        if self._normalizes():
            embeds = F.normalize(embeds.float(), dim=-1)
        return embeds.mean(dim=0)

    def _normalizes(self) -> bool:
        if self.similarity == "cosine":
            return True
        return self.similarity == "model" and bool(getattr(self.model.config, "ets_normalize_embeddings", False))

    # ------------------------------------------------------------------ ECG side
    def encode_ecgs(self, ecg_values: Any, sampling_rate: float | None = None, progress: bool = False) -> torch.Tensor:
        """(B, H) ECG embeddings of (B, 12, samples) ECGs (tensor / array, mV) or of a `datasets.Dataset` with an
        ``ecg`` column. With `sampling_rate`, the processor's feature extractor first converts the recordings
        (resampling, cropping / padding to 10 s); without it they must already be model input."""
        if isinstance(ecg_values, (torch.Tensor, np.ndarray)) and ecg_values.ndim == 2:
            ecg_values = ecg_values[None]
        feature_extractor = None
        if sampling_rate is not None:
            feature_extractor = getattr(self.processor, "feature_extractor", None)
            if feature_extractor is None:
                raise ValueError("`sampling_rate` was given but the processor has no ECG feature extractor")
            # on call too (the processor may have been changed since): Python ints, no device sync
            check_processor_matches_model(feature_extractor, self.model, where="encode_ecgs")
        return extract_ecg_features(
            self.model, ecg_values, batch_size=self.batch_size, autocast=self.autocast, progress=progress,
            feature_extractor=feature_extractor, sampling_rate=sampling_rate,
        )

    # ------------------------------------------------------------------ scores
    def scores(
        self,
        ecg_values: Any,
        class_names: Sequence[str] | None = None,
        descriptions: Sequence[str] | None = None,
        task: str | None = None,
        similarity: str | None = None,
        sampling_rate: float | None = None,
    ) -> torch.Tensor:
        """(B, C) zero-shot scores, one independent score per (ECG, class).

        Args:
            ecg_values: (B, 12, samples) ECGs (tensor or array, mV; use the processor for raw recordings), or a
                `datasets.Dataset` with an ``ecg`` column.
            class_names: class names whose descriptions are looked up (error if one has none), or
            descriptions: free-text class descriptions, used as given.
            task: description task for this call (default: the classifier's).
            similarity: ``"model"`` / ``"dot"`` / ``"cosine"`` for this call (default: the classifier's).
            sampling_rate: sampling rate of raw recordings, which the processor then converts (see `encode_ecgs`).
        """
        text_embeds, _ = self.class_embeddings(class_names, descriptions, task)
        ecg_embeds = self.encode_ecgs(ecg_values, sampling_rate=sampling_rate)
        return self.score_embeddings(ecg_embeds, text_embeds, similarity)

    __call__ = scores

    def scores_from_features(
        self,
        ecg_features: torch.Tensor,
        class_names: Sequence[str] | None = None,
        descriptions: Sequence[str] | None = None,
        task: str | None = None,
        similarity: str | None = None,
    ) -> torch.Tensor:
        """Like `scores`, on precomputed (B, H) ECG embeddings (e.g. from the feature cache)."""
        text_embeds, _ = self.class_embeddings(class_names, descriptions, task)
        return self.score_embeddings(ecg_features, text_embeds, similarity)

    def score_embeddings(self, ecg_embeds: torch.Tensor, text_embeds: torch.Tensor,
                         similarity: str | None = None) -> torch.Tensor:
        """(B, H) ECG x (C, H) description embeddings -> (B, C) scores with this classifier's similarity (or
        `similarity`)."""
        return zero_shot_scores(ecg_embeds, text_embeds, similarity or self.similarity, model=self.model)


def evaluation_ecg_features(classifier, data: Any, num_rows: int, ecg_features: torch.Tensor | None = None, *,
                            cache_dir=None, cache_name: str = "zero_shot", progress: bool = True,
                            sampling_rate: float | None = None) -> torch.Tensor:
    """The (N, H) ECG embeddings of an evaluation set: `ecg_features` when given, else extracted from `data` with the
    classifier's model (cached under `cache_dir`); checked against the `num_rows` label rows."""
    if ecg_features is None:
        feature_extractor = getattr(classifier.processor, "feature_extractor", None) if sampling_rate is not None else None
        ecg_features = extract_ecg_features(
            classifier.model, data, batch_size=classifier.batch_size, autocast=classifier.autocast,
            cache_dir=cache_dir, cache_name=cache_name, progress=progress,
            feature_extractor=feature_extractor, sampling_rate=sampling_rate,
        )
    if ecg_features.shape[0] != num_rows:
        raise ValueError(f"{ecg_features.shape[0]} ECG embeddings for {num_rows} label rows")
    return ecg_features


def evaluate_zero_shot(
    classifier: DBetaZeroShotClassifier,
    data: Any,
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    task: str | None = None,
    ecg_features: torch.Tensor | None = None,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    cache_name: str = "zero_shot",
    progress: bool = True,
    sampling_rate: float | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Score every record of `data` against every class and compute the multi-label AUROC metrics.

    Returns ``(results, scores)``: `results` has ``macro_auroc``, ``per_class``, ``skipped_classes``,
    ``num_classes_scored``, ``ci_low`` / ``ci_high`` (bootstrap over records), ``num_samples``, ``similarity``,
    the ``descriptions`` used and the ``prompt_set`` they came from; `scores` is the (N, C) score matrix. With `sampling_rate` (the rate of the
    stored ECGs) the processor's feature extractor prepares every batch; without it the ECGs are fed as stored.
    """
    labels = np.asarray(labels, dtype=np.float32)
    if labels.ndim != 2 or labels.shape[1] != len(class_names):
        raise ValueError(f"labels must be (N, {len(class_names)}), got {labels.shape}")
    text_embeds, texts = classifier.class_embeddings(list(class_names), task=task)
    ecg_features = evaluation_ecg_features(classifier, data, labels.shape[0], ecg_features, cache_dir=cache_dir,
                                           cache_name=cache_name, progress=progress, sampling_rate=sampling_rate)
    scores = classifier.score_embeddings(ecg_features, text_embeds).numpy()
    metrics = multilabel_auroc(labels, scores, class_names=list(class_names))
    low, high = bootstrap_auroc_ci(labels, scores, num_bootstrap=num_bootstrap, confidence=confidence, seed=seed)
    results = dict(metrics)
    results.update(
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        num_samples=int(labels.shape[0]),
        similarity=classifier.similarity,
        prompt_ensemble=classifier.prompt_ensemble,
        descriptions=dict(zip(class_names, texts)),
        prompt_set=classifier.prompt_set_info,
    )
    return results, scores


# Published D-BETA zero-shot AUROCs (%): Table 3 (six tasks, "Average" 77.1) and Table 5 (CODE-15 test).
PAPER_ZERO_SHOT_AUROC: dict[str, float] = {
    "ptbxl_super": 76.2,
    "ptbxl_sub": 75.9,
    "ptbxl_form": 66.1,
    "ptbxl_rhythm": 88.6,
    "cpsc2018": 80.1,
    "csn": 76.3,
    "code15": 96.79,
}
PAPER_ZERO_SHOT_AVERAGE = 77.1


def format_zero_shot_table(
    rows: Mapping[str, Mapping[str, float | None]],
    tasks: Sequence[str],
    task_titles: Mapping[str, str] | None = None,
    title: str | None = None,
    paper_row: bool = True,
) -> str:
    """Markdown in the layout of the paper's Table 3 (`dbeta_hf.evaluation.metrics.markdown_table`): methods as
    rows, tasks as columns, AUROC in %, and an ``Average`` column when there are several tasks.
    ``rows[method][task]`` is a macro AUROC in [0, 1]. With `paper_row`, the published D-BETA numbers of the same
    tasks are added as a reference row."""
    tasks = list(tasks)
    table_rows = {method: {t: values.get(t) for t in tasks} for method, values in rows.items()}
    if paper_row and any(t in PAPER_ZERO_SHOT_AUROC for t in tasks):
        table_rows["D-BETA (paper)"] = {
            t: (PAPER_ZERO_SHOT_AUROC[t] / 100.0 if t in PAPER_ZERO_SHOT_AUROC else None) for t in tasks
        }
    table = markdown_table(
        table_rows, title=title, tasks=tasks, task_titles=task_titles, average=len(tasks) > 1, row_header="Methods"
    )
    note = (
        "Macro AUROC (%) over the classes with positives and negatives in the evaluated split; zero-shot (no "
        "training labels)."
    )
    return f"{table}\n\n{note}\n"
