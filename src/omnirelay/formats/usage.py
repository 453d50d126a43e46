"""Token usage in one canonical shape, whatever the vendor called it.

``input_tokens`` counts every prompt token, cached ones included (OpenAI's ``prompt_tokens``); Anthropic reports
cache reads and writes apart from ``input_tokens``, so its adapter adds them in. ``output_tokens`` includes reasoning
tokens (OpenAI's ``completion_tokens``, Gemini's ``candidatesTokenCount + thoughtsTokenCount``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    """Prompt tokens read from a cache (billed at the cached-input price)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to a cache (Anthropic's ``cache_creation_input_tokens``)."""
    reasoning_tokens: int = 0
    """Part of ``output_tokens`` spent on hidden reasoning."""
    audio_input_tokens: int = 0
    """Part of ``input_tokens`` that is audio (OpenAI ``prompt_tokens_details.audio_tokens``), priced apart."""
    image_input_tokens: int = 0
    """Part of ``input_tokens`` that is images, where the vendor counts them apart (``input_tokens_details``)."""
    audio_output_tokens: int = 0
    """Part of ``output_tokens`` that is audio (``completion_tokens_details.audio_tokens``), priced apart."""
    estimated: bool = False
    """True when the gateway counted tokens itself because the upstream gave no usage."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
