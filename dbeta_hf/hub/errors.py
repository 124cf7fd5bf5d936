"""The error of a push to an unreachable Hub, kept apart from `dbeta_hf.hub.push` (which loads `evaluate` and
`huggingface_hub`) so that the commands can name it in their error handling without loading either."""

from __future__ import annotations

__all__ = ["HubUnreachableError"]


class HubUnreachableError(ConnectionError):
    """The Hugging Face Hub could not be reached; the folder to push is saved locally."""
