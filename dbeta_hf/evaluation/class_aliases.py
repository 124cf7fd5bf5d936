"""Class codes that name the same class in different naming schemes, per task.

Our task class codes are the label columns of MERL's split CSVs (PTB-XL super / sub / form / rhythm, CPSC2018
= ``icbeb``, CSN = ``chapman``) and CODE-15's own columns; `dbeta_hf.evaluation.prompts.task_class_names` lists
them. Other sources name some of these classes differently:

* CODE-15's columns (``1dAVb``, ``SB``, ``AF``, ``ST``) against the names the official D-BETA notebook scores
  them with (``1AVB``, ``SBRAD``, ``AFIB``, ``STACH``);
* the same finding spelled differently by PTB-XL's SCP statements, the CPSC2018 labels and the CSN labels as
  MERL writes them (CPSC ``VPC`` / CSN ``VPB`` / PTB-XL ``PVC``; CSN ``APB`` / PTB-XL ``PAC``; PTB-XL and CPSC
  ``CRBBB`` / ``CLBBB`` against CSN ``RBBB`` / ``LBBB``; CSN ``SA``, ``SVT``, ``ST``, ``STDD`` against PTB-XL
  ``SARRH``, ``SVTAC``, ``STACH``, ``STD``; CSN ``AF``, which is atrial *flutter*, against PTB-XL ``AFLT``).

A prompt file keyed by any of these names (the official repository's ``{label: description}`` JSON is keyed by
a mixture of them) therefore covers the class. The table is per task because a code can mean different things in
different datasets: ``AF`` is atrial fibrillation in CODE-15 but atrial flutter in CSN. The class's own code is
always tried first, for every class: a file that has both ``AF`` and ``AFIB`` gives CODE-15's ``AF`` the text
under ``AF`` (`dbeta_hf.evaluation.prompts.prompt_set_descriptions` refuses two *other* keys for one class).

    >>> equivalent_class_codes("1dAVb", "code15")
    ('1dAVb', '1AVB')
    >>> equivalent_class_codes("AF", "code15"), equivalent_class_codes("AF", "csn")
    (('AF', 'AFIB'), ('AF', 'AFLT'))
    >>> equivalent_class_codes("NORM", "ptbxl_super")
    ('NORM',)
"""

from __future__ import annotations

__all__ = ["CLASS_CODE_ALIASES", "equivalent_class_codes"]

# task -> groups of codes naming one class (unordered: a class's own code is tried first, then the others).
CLASS_CODE_ALIASES: dict[str, tuple[tuple[str, ...], ...]] = {
    "code15": (("1dAVb", "1AVB"), ("SB", "SBRAD"), ("AFIB", "AF"), ("ST", "STACH")),
    "cpsc2018": (("VPC", "PVC", "VPB"), ("CRBBB", "RBBB"), ("CLBBB", "LBBB"), ("PAC", "APB")),
    "csn": (
        ("AFLT", "AF"),
        ("SA", "SARRH"),
        ("SVT", "SVTAC"),
        ("ST", "STACH"),
        ("STDD", "STD"),
        ("VPB", "PVC", "VPC"),
        ("APB", "PAC"),
        ("RBBB", "CRBBB"),
        ("LBBB", "CLBBB"),
    ),
    "ptbxl_sub": (("CRBBB", "RBBB"), ("CLBBB", "LBBB")),
    "ptbxl_form": (("PVC", "VPC", "VPB"), ("PAC", "APB")),
    "ptbxl_rhythm": (("SBRAD", "SB"), ("STACH", "ST"), ("SARRH", "SA"), ("SVTAC", "SVT")),
}


def equivalent_class_codes(code: str, task: str | None) -> tuple[str, ...]:
    """The codes naming class `code` in `task`: `code` itself first, then its aliases in table order (`code` alone
    if it has no alias in that task, or if `task` is None: without a task no alias is safe)."""
    code = str(code)
    if task is None:
        return (code,)
    for group in CLASS_CODE_ALIASES.get(task, ()):
        if code in group:
            return (code, *(other for other in group if other != code))
    return (code,)
