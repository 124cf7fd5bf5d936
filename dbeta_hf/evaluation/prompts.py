"""Class descriptions (prompts) for zero-shot ECG classification.

D-BETA scores a class by the similarity between an ECG embedding and the embedding of one sentence describing
the class (reference spec F.3). `dbeta_hf/resources/class_descriptions.json` ships one lower-case clinical
definition per class, ``"<name>. <definition>."``, for every class of PTB-XL super / sub / form / rhythm,
CPSC2018, Chapman-Shaoxing-Ningbo (CSN), CODE-15 and the synthetic corpus. The texts are our own, written in
the style of the official prompts (they are not the official prompt file).

The file has three parts:

* ``descriptions``: ``{code: text}``, one text per class code;
* ``task_overrides``: ``{task: {code: text}}`` for codes whose meaning depends on the dataset (CSN ``AF`` is
  atrial flutter but CODE-15 ``AF`` is atrial fibrillation; CSN ``STE`` is an ST-interval abnormality; the
  PTB-XL *superclass* ``STTC`` is broader than the ``STTC`` subclass). A code that is ambiguous without a task
  (``AF``) has no global text, so asking for it without `task` is an error rather than a silent guess;
* ``tasks``: ``{task: [codes...]}``, every task's classes in label-column order.

Zero-shot scoring (`dbeta_hf.evaluation.zero_shot.DBetaZeroShotClassifier` and the pipeline, which uses it) looks
descriptions up through one function, `describe_classes`: the texts of a complete prompt set (`load_prompt_set`,
e.g. the official prompt file) when one is given, else the shipped descriptions.

Look-up order in `class_descriptions`: the caller's `overrides`, then the task's overrides, then the global
descriptions. A code is matched exactly first, then ignoring case and PTB-XL's leading / trailing underscores
(``ISC_``, ``_AVB`` and ``NST_`` find ``ISC``, ``AVB`` and ``NST``). An exact key always wins; two keys that
match one class only loosely (``ISC_`` and ``isc``) are an `AmbiguousClassDescriptionError` naming both, and a
JSON file with a key twice in one object is an error naming the key and the file (JSON keeps the last silently).

    >>> from dbeta_hf.evaluation.prompts import class_descriptions, task_class_names
    >>> class_descriptions(["AF"], task="code15")[0].split(".")[0]
    'atrial fibrillation'
    >>> class_descriptions(["AF"], task="csn")[0].split(".")[0]
    'atrial flutter'
    >>> len(task_class_names("ptbxl_sub"))
    23
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from .class_aliases import equivalent_class_codes

__all__ = [
    "DEFAULT_CLASS_DESCRIPTIONS_PATH",
    "TASK_ALIASES",
    "MissingClassDescriptionError",
    "AmbiguousClassDescriptionError",
    "load_class_descriptions",
    "available_tasks",
    "task_class_names",
    "class_descriptions",
    "BUILTIN_PROMPT_SET",
    "load_prompt_set",
    "prompt_set_descriptions",
    "prompt_set_record",
    "describe_classes",
    "PROMPT_ENSEMBLES",
    "description_sentences",
    "ensemble_texts",
    "class_prompts",
]

DEFAULT_CLASS_DESCRIPTIONS_PATH = Path(__file__).resolve().parent.parent / "resources" / "class_descriptions.json"

# Other common spellings of the task names.
TASK_ALIASES = {
    "super": "ptbxl_super",
    "superdiagnostic": "ptbxl_super",
    "sub": "ptbxl_sub",
    "subdiagnostic": "ptbxl_sub",
    "form": "ptbxl_form",
    "rhythm": "ptbxl_rhythm",
    "icbeb": "cpsc2018",
    "cpsc": "cpsc2018",
    "chapman": "csn",
    "chapman_shaoxing_ningbo": "csn",
    "code": "code15",
    "code_15": "code15",
    "code-15": "code15",
    "code15_test": "code15",
}


_META_KEYS = {"_about", "_comment", "_license", "_source"}  # notes, not classes (PTB-XL's "_AVB" is a class)


class MissingClassDescriptionError(KeyError, ValueError):
    """Some classes have no description. A `KeyError` and a `ValueError`; ``str()`` gives the plain message."""

    def __init__(self, message: str, missing: Sequence[str]):
        super().__init__(message)
        self.message = message
        self.missing = list(missing)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class AmbiguousClassDescriptionError(ValueError):
    """Several keys of a description table name one class and none of them is the class's own code (aliases,
    or spellings that differ in case or PTB-XL underscores). `keys` lists them; nothing is picked silently."""

    def __init__(self, class_name: str, keys: Sequence[str], source: str, task: str | None = None):
        self.class_name = class_name
        self.keys = list(keys)
        self.source = source
        where = f" of task {task!r}" if task else ""
        super().__init__(
            f"{source}: the keys {', '.join(repr(k) for k in self.keys)} all name the class {class_name!r}{where}; "
            f"keep one of them (or add the class's own key {class_name!r}, which always wins)."
        )


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json` object hook: a key given twice in one object is an error (plain JSON keeps the last one)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _normalize_structure(data: Any, source: str) -> dict[str, Any]:
    """Accept the shipped structure or a flat ``{code: text}`` mapping; return the structure."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: class descriptions must be a JSON object, got {type(data).__name__}")
    if isinstance(data.get("descriptions"), Mapping):
        descriptions = data["descriptions"]
        task_overrides = data.get("task_overrides") or {}
        tasks = data.get("tasks") or {}
    else:  # flat {code: text}, e.g. a user's file or the official context_llm.json
        descriptions = {k: v for k, v in data.items() if k not in _META_KEYS}
        task_overrides, tasks = {}, {}
    if not isinstance(task_overrides, Mapping) or not all(isinstance(v, Mapping) for v in task_overrides.values()):
        raise ValueError(f"{source}: 'task_overrides' must map a task to a {{code: text}} object")
    if not isinstance(tasks, Mapping) or not all(isinstance(v, (list, tuple)) for v in tasks.values()):
        raise ValueError(f"{source}: 'tasks' must map a task to a list of class codes")
    return {
        "descriptions": _checked_texts(descriptions, source),
        "task_overrides": {str(t): _checked_texts(o, f"{source} (task {t!r})") for t, o in task_overrides.items()},
        "tasks": {str(t): [str(c) for c in codes] for t, codes in tasks.items()},
    }


def _checked_texts(table: Mapping[str, Any], source: str) -> dict[str, str | list[str]]:
    """``{code: text}`` where a text is a string or, for a prompt ensemble, a non-empty list of strings."""
    checked: dict[str, str | list[str]] = {}
    for key, value in table.items():
        if isinstance(value, str):
            checked[str(key)] = value
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
            checked[str(key)] = [str(v) for v in value]
        elif isinstance(value, (list, tuple)):
            raise ValueError(
                f"{source}: the prompt list of {key!r} is empty or holds an empty or non-string text; give at least "
                "one non-empty text per class"
            )
        else:
            raise ValueError(
                f"{source}: the description of {key!r} must be a string or a list of strings, got {type(value).__name__}"
            )
    return checked


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f, object_pairs_hook=_reject_duplicate_keys)
        except _DuplicateKey as duplicate:
            raise ValueError(
                f"{path}: the key {duplicate.key!r} appears twice in one JSON object; only one text per key is "
                "allowed (JSON readers would silently keep the last). Remove one of them."
            ) from None
    return _normalize_structure(data, path)


def load_class_descriptions(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Load a class-description file: ``{"descriptions": {...}, "task_overrides": {...}, "tasks": {...}}``.

    `path` defaults to the shipped `resources/class_descriptions.json`. A flat ``{code: text}`` JSON file (for
    example your own prompts, or the official ``context_llm.json``) is accepted too and returned in the same
    structure with empty ``task_overrides`` and ``tasks``. The result is a fresh copy: edit it freely.
    """
    path = Path(path) if path is not None else DEFAULT_CLASS_DESCRIPTIONS_PATH
    if not path.is_file():
        raise FileNotFoundError(f"class description file not found: {path}")
    return copy.deepcopy(_load_cached(str(path.resolve()), path.stat().st_mtime))


def _resolve_task(task: str | None, known: Mapping[str, Any]) -> str | None:
    if task is None:
        return None
    key = str(task).strip().lower().replace(" ", "_")
    key = TASK_ALIASES.get(key, key)
    if key not in known:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(known))}")
    return key


def available_tasks() -> list[str]:
    """The tasks of the shipped description file."""
    return list(load_class_descriptions()["tasks"])


def task_class_names(task: str) -> list[str]:
    """The class codes of a task in label-column order, e.g. ``task_class_names("code15")`` ->
    ``["1dAVb", "RBBB", "LBBB", "SB", "AF", "ST"]`` (reference spec F.1; tasks: `available_tasks`)."""
    data = load_class_descriptions()
    return list(data["tasks"][_resolve_task(task, data["tasks"])])


def _canonical(code: str) -> str:
    return str(code).strip().strip("_").lower()


def _lookup(table: Mapping[str, str], code: str, source: str = "descriptions") -> str | None:
    """The text of `code`: its exact key, else the one key equal to it up to case and PTB-XL underscores
    (several such keys: `AmbiguousClassDescriptionError`); None when there is none."""
    found = _find_key(table, (code,), source)
    return None if found is None else table[found]


def _find_key(table: Mapping[str, str], codes: Sequence[str], source: str, task: str | None = None) -> str | None:
    """The key of `table` for the class ``codes[0]``: the exact key ``codes[0]`` if present; else the one key
    matching any of `codes` (the class's own code and its aliases) up to case and PTB-XL underscores. Two or more
    such keys are an `AmbiguousClassDescriptionError`; None when there is none."""
    if codes[0] in table:
        return codes[0]
    wanted = {_canonical(code) for code in codes}
    matches = [key for key in table if _canonical(key) in wanted]
    if len(matches) > 1:
        raise AmbiguousClassDescriptionError(codes[0], matches, source, task)
    return matches[0] if matches else None


def _clean_text(text: str | Sequence[str], lowercase: bool) -> str | list[str]:
    if isinstance(text, str):
        text = text.strip()
        return text.lower() if lowercase else text
    return [_clean_text(t, lowercase) for t in text]


def _as_overrides(overrides: Mapping[str, Any] | str | os.PathLike | None) -> dict[str, Any] | None:
    if overrides is None:
        return None
    if isinstance(overrides, (str, os.PathLike)):
        return load_class_descriptions(overrides)
    if isinstance(overrides, Mapping):
        return _normalize_structure(overrides, "overrides")
    raise TypeError(f"overrides must be a dict, a JSON file path or None, got {type(overrides).__name__}")


def class_descriptions(
    class_names: Sequence[str],
    task: str | None = None,
    overrides: Mapping[str, Any] | str | os.PathLike | None = None,
    lowercase: bool = True,
    overrides_argument: str = "overrides",
) -> list[str]:
    """One description per class name, in order.

    Args:
        class_names: class codes, e.g. ``["AFIB", "SR", "1AVB"]`` or ``task_class_names("csn")``.
        task: selects the task-specific texts of codes whose meaning depends on the dataset (``"csn"``,
            ``"code15"``, ``"ptbxl_super"``, ...; aliases such as ``"chapman"`` or ``"icbeb"`` work).
        overrides: your own texts, which win over the shipped ones: a ``{code: text}`` dict, a dict in the shipped
            structure (``descriptions`` / ``task_overrides``), or the path of a JSON file with either.
        lowercase: lower-case every text, as the official zero-shot flow does (``context_llm[label].lower()``).
        overrides_argument: what the missing-description error tells the user to pass: callers that take the
            overrides under another name (the pipeline's and `DBetaZeroShotClassifier`'s ``descriptions=``) name it.

    Raises:
        MissingClassDescriptionError (a `KeyError` and a `ValueError`): some classes have no description; the
        message lists them and how to supply texts.
    """
    if isinstance(class_names, str):
        class_names = [class_names]
    shipped = load_class_descriptions()
    task_key = _resolve_task(task, {**shipped["tasks"], **shipped["task_overrides"]}) if task is not None else None
    layers: list[tuple[str, Mapping[str, str]]] = []
    user = _as_overrides(overrides)
    user_name = os.fspath(overrides) if isinstance(overrides, (str, os.PathLike)) else overrides_argument
    if user is not None:
        if task_key is not None:
            layers.append((user_name, user["task_overrides"].get(task_key, {})))
        layers.append((user_name, user["descriptions"]))
    if task_key is not None:
        layers.append(("built-in descriptions", shipped["task_overrides"].get(task_key, {})))
    layers.append(("built-in descriptions", shipped["descriptions"]))

    texts: list[str] = []
    missing: list[str] = []
    for name in class_names:
        text = None
        for source, layer in layers:
            text = _lookup(layer, str(name), source)
            if text is not None:
                break
        if text is None:
            missing.append(str(name))
            continue
        texts.append(_clean_text(text, lowercase))
    if missing:
        ambiguous = sorted(
            {m for m in missing for t, o in shipped["task_overrides"].items() if _lookup(o, m) is not None}
        )
        hint = ""
        if ambiguous and task_key is None:
            tasks_for = {
                m: sorted(t for t, o in shipped["task_overrides"].items() if _lookup(o, m) is not None) for m in ambiguous
            }
            hint = " The meaning of " + "; ".join(f"{m!r} depends on the task ({', '.join(t)})" for m, t in tasks_for.items()) + ": pass task=..."
        raise MissingClassDescriptionError(
            f"no class description for {missing}"
            + (f" (task {task_key!r})" if task_key else "")
            + "."
            + hint
            + f" Supply your own with {overrides_argument}={{'CODE': 'name. definition.'}} or "
            f"{overrides_argument}='my_descriptions.json' "
            "(a JSON object mapping each class code to its description).",
            missing,
        )
    return texts


# ---------------------------------------------------------------------------------------------------- prompt sets
BUILTIN_PROMPT_SET = {"name": "dbeta_hf built-in class descriptions", "path": str(DEFAULT_CLASS_DESCRIPTIONS_PATH)}


def load_prompt_set(source: Mapping[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """Load a complete prompt set: every class of a task must then be described by it (see
    `prompt_set_descriptions`); nothing falls back to the built-in texts.

    `source` is the path of a JSON file or a dict, either the official repository's format, a flat
    ``{label: description}`` object (e.g. D-BETA's ``configs/context_llm.json``, which you download yourself:
    its licence does not allow shipping it), or this package's structured format (``descriptions`` /
    ``task_overrides``). The result records where the texts came from, for results files:
    ``{"name", "sha256", "descriptions", "task_overrides"}``; ``sha256`` hashes the file bytes (or, for a
    dict, its sorted JSON), so two runs with the same name but edited texts can be told apart.
    """
    if isinstance(source, Mapping):
        data = _normalize_structure(source, "prompt set")
        name = "prompt set given as a dict"
        digest = hashlib.sha256(json.dumps(source, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"prompt file not found: {path}. Pass a JSON object mapping each class label to its description."
            )
        data = load_class_descriptions(path)
        name = str(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        raise TypeError(f"a prompt set must be a dict or a JSON file path, got {type(source).__name__}")
    if not data["descriptions"] and not data["task_overrides"]:
        raise ValueError(f"{name}: the prompt set has no description at all")
    return {"name": name, "sha256": digest, "descriptions": data["descriptions"], "task_overrides": data["task_overrides"]}


def prompt_set_descriptions(
    class_names: Sequence[str],
    prompt_set: Mapping[str, Any],
    task: str | None = None,
    lowercase: bool = True,
) -> list[str]:
    """One description per class from a complete prompt set (`load_prompt_set`), in order.

    A class is looked up first in the set's overrides for `task`, then in its descriptions. In each, the class's
    own code as written wins; without it, the one key naming the class in another scheme
    (`dbeta_hf.evaluation.class_aliases`, per task: CODE-15's ``1dAVb`` is found as ``1AVB``, CSN's ``AF`` as
    ``AFLT``) or spelled with another case or PTB-XL underscores is used. `lowercase` lower-cases each text as
    the official zero-shot flow does.

    Raises:
        MissingClassDescriptionError: some classes are not covered; the message lists every uncovered class
            with the keys that were tried. There is no fallback to the built-in texts.
        AmbiguousClassDescriptionError: the class's own code is absent and two or more other keys name it
            (e.g. ``PVC`` and ``VPB`` for CPSC2018's ``VPC``); the message names them all.
    """
    if isinstance(class_names, str):
        class_names = [class_names]
    shipped = load_class_descriptions()
    task_key = _resolve_task(task, {**shipped["tasks"], **shipped["task_overrides"]}) if task is not None else None
    layers = [prompt_set.get("task_overrides", {}).get(task_key, {})] if task_key else []
    layers.append(prompt_set["descriptions"])
    source = f"prompt set {prompt_set.get('name', '')!r}"
    texts: list[str] = []
    missing: dict[str, tuple[str, ...]] = {}
    for name in class_names:
        keys = equivalent_class_codes(str(name), task_key)
        text = None
        for layer in layers:
            found = _find_key(layer, keys, source, task_key)
            if found is not None:
                text = layer[found]
                break
        if text is None:
            missing[str(name)] = keys
            continue
        texts.append(_clean_text(text, lowercase))
    if missing:
        listed = ", ".join(f"{name} (looked for {' / '.join(keys)})" for name, keys in missing.items())
        raise MissingClassDescriptionError(
            f"the prompt set {prompt_set.get('name', '')!r} does not cover {len(missing)} of the "
            f"{len(class_names)} classes" + (f" of task {task_key!r}" if task_key else "") + f": {listed}. "
            "Add a description for each of them to the file (a JSON object label -> description); the built-in "
            "texts are not mixed in.",
            list(missing),
        )
    return texts


def prompt_set_record(prompt_set: Mapping[str, Any] | None) -> dict[str, Any]:
    """What results files record about the prompts used: the set's name (file path) and sha256, or
    `BUILTIN_PROMPT_SET` for the shipped descriptions (`prompt_set=None`)."""
    if prompt_set is None:
        return dict(BUILTIN_PROMPT_SET)
    return {"name": prompt_set["name"], "sha256": prompt_set["sha256"]}


def describe_classes(
    class_names: Sequence[str], task: str | None = None, prompt_set: Mapping[str, Any] | None = None
) -> list[str]:
    """The description look-up of zero-shot scoring: one text per class, in order.

    With `prompt_set` (`load_prompt_set`), every class must be covered by it (`prompt_set_descriptions`; the
    built-in texts are never mixed in); without, the shipped descriptions of `task` (`class_descriptions`). The
    missing-description error names ``descriptions=``, the argument under which the classifier and the pipeline
    take a prompt set.

    Raises:
        MissingClassDescriptionError: some classes have no description; the message lists them.
    """
    if isinstance(class_names, str):
        class_names = [class_names]
    if prompt_set is not None:
        return prompt_set_descriptions(list(class_names), prompt_set, task=task)
    return class_descriptions(list(class_names), task=task, overrides_argument="descriptions")


# ---------------------------------------------------------------------------------------------------- ensembles
PROMPT_ENSEMBLES = ("description", "name+description", "sentences")
_SENTENCE_END = re.compile(r"(?<=\.)\s+")


def description_sentences(description: str) -> list[str]:
    """The sentences of a description (split after a period followed by white space, so ``0.5 mv`` stays whole),
    e.g. ``"sinus rhythm. a regular rhythm."`` -> ``["sinus rhythm.", "a regular rhythm."]``."""
    return [part.strip() for part in _SENTENCE_END.split(description.strip()) if part.strip()]


def ensemble_texts(description: str | Sequence[str], ensemble: str = "description", class_name: str = "") -> list[str]:
    """The texts whose embeddings are averaged into one class embedding.

    A list (a class given several texts in a prompt file) is the class's ensemble whatever `ensemble` says. For a
    single description, `ensemble` is one of `PROMPT_ENSEMBLES`:

    * ``"description"``: the description alone (the official zero-shot scoring: one text per class);
    * ``"name+description"``: the class name (the description's first sentence, by the ``"<name>. <definition>."``
      convention of the shipped and official prompt files) and the whole description;
    * ``"sentences"``: each sentence of the description on its own (the first one being the class name).

    Duplicates are dropped (a one-sentence description gives one text under every ensemble).
    """
    if ensemble not in PROMPT_ENSEMBLES:
        raise ValueError(f"unknown prompt ensemble {ensemble!r}; choose one of {', '.join(PROMPT_ENSEMBLES)}")
    if isinstance(description, str):
        sentences = description_sentences(description)
        if ensemble == "description" or not sentences:
            texts = [description]
        elif ensemble == "name+description":
            texts = [sentences[0], description]
        else:
            texts = sentences
    else:
        texts = [str(t) for t in description]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not texts:
        raise ValueError(f"class {class_name!r} has no prompt text: give at least one non-empty text")
    return texts


def class_prompts(
    class_names: Sequence[str],
    task: str | None = None,
    prompt_set: Mapping[str, Any] | None = None,
    ensemble: str = "description",
) -> list[list[str]]:
    """The prompt texts of every class, in order (`describe_classes`, then `ensemble_texts`)."""
    names = [class_names] if isinstance(class_names, str) else list(class_names)
    descriptions = describe_classes(names, task=task, prompt_set=prompt_set)
    return [ensemble_texts(d, ensemble, name) for name, d in zip(names, descriptions)]
