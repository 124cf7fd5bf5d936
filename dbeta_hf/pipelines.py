"""The ``zero-shot-ecg-classification`` pipeline (registered with transformers by `register_pipelines`).

    >>> import dbeta_hf
    >>> dbeta_hf.register_auto_classes()  # the D-BETA Auto classes and this pipeline
    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-ecg-classification", model="outputs/dbeta-tiny-synthetic")
    >>> classifier(ecg, sampling_rate=500, candidate_labels=["SR", "AFIB", "BBB"], description_task="synthetic")
    [{'label': 'AFIB', 'score': 3.1}, {'label': 'SR', 'score': -0.4}, {'label': 'BBB', 'score': -2.0}]

The pipeline is **multi-label**: each candidate label gets an independent score, the model's ECG-text logit
(`DBetaModel.ecg_text_logits`, the similarity its ETS loss trained; the raw dot product for the official model) of
the uni-modal ECG embedding and the embedding of the label's description (`similarity="dot"` / `"cosine"` for the
raw dot product / the cosine; `function_to_apply="sigmoid"` maps each score through a sigmoid, still independently,
the ETS loss's pair probability). Scores are never normalized across labels, so several labels can be present at
once and a label's score does not depend on which other labels are asked for.

Candidate labels are class names looked up in D-BETA's class descriptions (`dbeta_hf.evaluation.prompts`); pass
`descriptions={label: text}` (or a JSON path, e.g. the official prompt file) to use your own prompt set instead
(it must cover every label), or `use_descriptions=False` to encode the
labels themselves through `hypothesis_template`.

The scoring is `dbeta_hf.evaluation.zero_shot.DBetaZeroShotClassifier`'s (the one used by every zero-shot
evaluation): the pipeline holds one, which caches the description embeddings, and looks descriptions up with
`dbeta_hf.evaluation.prompts.describe_classes`. The pipeline adds the transformers plumbing: per-call arguments,
raw recordings through the processor, batching and the sorted ``{"label", "score"}`` output.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import Pipeline

from .evaluation.prompts import PROMPT_ENSEMBLES, class_prompts, load_prompt_set
from .evaluation.zero_shot import SIMILARITIES, DBetaZeroShotClassifier

__all__ = ["ZeroShotECGClassificationPipeline", "register_pipelines", "ZERO_SHOT_ECG_TASK"]

ZERO_SHOT_ECG_TASK = "zero-shot-ecg-classification"
_FUNCTIONS = ("none", "sigmoid")


class ZeroShotECGClassificationPipeline(Pipeline):
    """Zero-shot multi-label ECG classification with a D-BETA model (`DBetaModel`) and its `DBetaProcessor`.

    Call arguments (also accepted by the constructor as defaults):
        candidate_labels (`list[str]`): the classes to score.
        sampling_rate (`float`): sampling rate of the input recordings in Hz (required, as for the processor).
        lead_names (`list[str]`, *optional*): the lead of each input row (default: 12 leads in canonical order).
        units (`str`, *optional*): units of the input (`"mV"` for floats; required for integer input).
        description_task (`str`, *optional*): task whose class descriptions to use (`"ptbxl_super"`, `"code15"`...).
        descriptions (`dict` or JSON path, *optional*): a complete prompt set ``{label: description}`` (the official
            repository's format) used instead of the built-in descriptions; every candidate label must be covered
            (directly or under an alias of `description_task`), else an error lists the uncovered labels.
        use_descriptions (`bool`, defaults to `True`): look labels up in the description files; `False` encodes
            ``hypothesis_template.format(label)`` instead.
        hypothesis_template (`str`, defaults to `"{}"`): applied to every text (description or label).
        prompt_ensemble (`str`, defaults to `"description"`): with descriptions, the texts that stand for a label
            (`dbeta_hf.evaluation.prompts.ensemble_texts`): `"description"` (the official scoring), `"name+description"`
            or `"sentences"`; their embeddings are averaged.
        similarity (`str`, defaults to `"model"`): `"model"` (the model's ECG-text logits), `"dot"` (raw dot
            product) or `"cosine"`.
        function_to_apply (`str`, defaults to `"none"`): `"none"` (raw scores) or `"sigmoid"` (per label).
        top_k (`int`, *optional*): keep the k best labels.

    Inputs: one ECG as a ``(leads, samples)`` array / tensor, a ``(batch, leads, samples)`` array, a list of
    ECGs, or dicts ``{"ecg": ..., "sampling_rate": ..., "lead_names": ...}``. Returns, per ECG, a list of
    ``{"label", "score"}`` sorted by decreasing score.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(
                "the zero-shot ECG pipeline needs the DBetaProcessor of the checkpoint: pass processor=... or a model "
                "folder that contains it (saved with processor.save_pretrained)"
            )
        if self.tokenizer is None:
            self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.feature_extractor is None:
            self.feature_extractor = getattr(self.processor, "feature_extractor", None)
        # the zero-shot scorer (it checks that the model has both towers and switches it to eval mode); without
        # autocast, the pipeline runs the model in its own dtype
        self.zero_shot = DBetaZeroShotClassifier(self.model, self.processor, autocast=False)

    # ------------------------------------------------------------------ parameters
    def _sanitize_parameters(
        self,
        candidate_labels: Sequence[str] | None = None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        units: str | None = None,
        description_task: str | None = None,
        descriptions: Mapping[str, str] | str | os.PathLike | None = None,
        use_descriptions: bool | None = None,
        hypothesis_template: str | None = None,
        prompt_ensemble: str | None = None,
        similarity: str | None = None,
        function_to_apply: str | None = None,
        top_k: int | None = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)} for the zero-shot ECG pipeline")
        _check_call_arguments(candidate_labels, hypothesis_template, top_k)
        pre: dict[str, Any] = {}
        fwd: dict[str, Any] = {}
        post: dict[str, Any] = {}
        for name, value in (
            ("candidate_labels", candidate_labels),
            ("sampling_rate", sampling_rate),
            ("lead_names", lead_names),
            ("units", units),
            ("description_task", description_task),
            ("descriptions", descriptions),
            ("use_descriptions", use_descriptions),
            ("hypothesis_template", hypothesis_template),
            ("prompt_ensemble", prompt_ensemble),
        ):
            if value is not None:
                pre[name] = value
        if prompt_ensemble is not None and prompt_ensemble not in PROMPT_ENSEMBLES:
            raise ValueError(f"prompt_ensemble must be one of {PROMPT_ENSEMBLES}, got {prompt_ensemble!r}")
        if candidate_labels is not None:  # postprocess names the scores; preprocess checks the labels
            post["candidate_labels"] = [candidate_labels] if isinstance(candidate_labels, str) else list(candidate_labels)
        if similarity is not None:
            if similarity not in SIMILARITIES:
                raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
            fwd["similarity"] = similarity
        if function_to_apply is not None:
            if function_to_apply not in _FUNCTIONS:
                raise ValueError(f"function_to_apply must be one of {_FUNCTIONS}, got {function_to_apply!r}")
            post["function_to_apply"] = function_to_apply
        if top_k is not None:
            post["top_k"] = int(top_k)
        return pre, fwd, post

    def __call__(self, ecgs, **kwargs):
        """Score ECG(s) against `candidate_labels`; see the class docstring for the arguments."""
        if isinstance(ecgs, (np.ndarray, torch.Tensor)) and ecgs.ndim == 3:
            ecgs = list(ecgs)
        return super().__call__(ecgs, **kwargs)

    # ------------------------------------------------------------------ steps
    def _texts(self, labels, description_task, descriptions, use_descriptions, hypothesis_template,
               prompt_ensemble="description") -> list[list[str]]:
        """The texts of every label (one list per label: several with a prompt ensemble)."""
        if use_descriptions:  # a prompt set (`descriptions`) must cover every label: no built-in fallback
            prompt_set = None if descriptions is None else load_prompt_set(descriptions)
            prompts = class_prompts(labels, task=description_task, prompt_set=prompt_set, ensemble=prompt_ensemble)
        else:
            prompts = [[label] for label in labels]
        return [[hypothesis_template.format(t) for t in texts] for texts in prompts]

    def preprocess(
        self,
        inputs,
        candidate_labels: Sequence[str] | None = None,
        sampling_rate: float | None = None,
        lead_names: Sequence[str] | None = None,
        units: str | None = None,
        description_task: str | None = None,
        descriptions=None,
        use_descriptions: bool = True,
        hypothesis_template: str = "{}",
        prompt_ensemble: str = "description",
    ):
        if isinstance(inputs, Mapping):
            if "ecg" not in inputs:
                raise KeyError("a dict input needs an 'ecg' entry (and 'sampling_rate')")
            sampling_rate = inputs.get("sampling_rate", sampling_rate)
            lead_names = inputs.get("lead_names", lead_names)
            units = inputs.get("units", units)
            inputs = inputs["ecg"]
        if isinstance(candidate_labels, str):
            candidate_labels = [candidate_labels]
        if not candidate_labels:
            raise ValueError("pass candidate_labels=[...], the classes to score")
        if sampling_rate is None:
            raise ValueError(
                "pass sampling_rate=<Hz> (the sampling rate of the input ECG); the processor resamples it to the model's rate"
            )
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        ecg = np.asarray(inputs)  # the feature extractor checks the dtype (integers need `units`)
        if ecg.ndim != 2:
            raise ValueError(f"one ECG must be (leads, samples), got shape {ecg.shape}")
        texts = self._texts(candidate_labels, description_task, descriptions, use_descriptions, hypothesis_template,
                            prompt_ensemble)
        ecg_inputs = self.feature_extractor(
            ecg, sampling_rate=sampling_rate, lead_names=lead_names, units=units, return_tensors="pt"
        )
        return {"ecg_values": ecg_inputs["ecg_values"], "texts": texts}

    def _forward(self, model_inputs, similarity: str | None = None):
        ecg_embeds = self.zero_shot.encode_ecgs(model_inputs["ecg_values"])
        texts = model_inputs["texts"]
        # one ECG gives its texts per label; with batch_size > 1 the collator stacks the ECGs and lists the lists
        texts_per_ecg = [texts] if texts and isinstance(texts[0][0], str) else texts
        scores = torch.cat([
            self.zero_shot.scores_from_features(ecg_embeds[i : i + 1], descriptions=item_texts, similarity=similarity)
            for i, item_texts in enumerate(texts_per_ecg)
        ])
        return {"scores": scores}  # (ECGs, labels)

    def postprocess(self, model_outputs, candidate_labels: Sequence[str] = (), function_to_apply: str = "none",
                    top_k: int | None = None):
        scores = model_outputs["scores"].reshape(-1)  # one ECG: (1, labels) or (labels,)
        if function_to_apply == "sigmoid":
            scores = torch.sigmoid(scores)
        result = [
            {"label": label, "score": float(score)}
            for score, label in sorted(zip(scores.tolist(), candidate_labels, strict=True), key=lambda x: -x[0])
        ]
        return result[:top_k] if top_k is not None else result


def _check_call_arguments(candidate_labels, hypothesis_template, top_k) -> None:
    """Refuse arguments that would silently give a wrong or empty answer."""
    if candidate_labels is not None and not isinstance(candidate_labels, str):
        labels = list(candidate_labels)
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(
                f"candidate_labels repeats {duplicates}; each label is scored once, pass each label only once"
            )
    if hypothesis_template is not None and "{}" not in hypothesis_template:
        raise ValueError(
            f"hypothesis_template must contain '{{}}' where the label (or its description) goes, got "
            f"{hypothesis_template!r}; e.g. 'an ECG showing {{}}'"
        )
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k <= 0):
        raise ValueError(f"top_k must be a positive integer (the number of labels to return), got {top_k!r}")


def register_pipelines() -> None:
    """Register ``zero-shot-ecg-classification`` with `transformers.pipeline` (idempotent)."""
    existing = PIPELINE_REGISTRY.supported_tasks.get(ZERO_SHOT_ECG_TASK)
    if existing is not None and existing.get("impl") is ZeroShotECGClassificationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        ZERO_SHOT_ECG_TASK,
        pipeline_class=ZeroShotECGClassificationPipeline,
        pt_model=AutoModel,
        type="multimodal",
    )
