"""Prompt texts (``templates``) and the message builders that order them for prefix sharing (``build``)."""

from sotrag.prompts.templates import PROMPT_VERSION

__all__ = ["PROMPT_VERSION"]
