"""Channel types as data: the wire format each speaks and how it authenticates.

An OpenAI-compatible vendor (DeepSeek, a vLLM server, a reseller) is a row here, not a class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

WireFormat = Literal["openai", "anthropic", "gemini", "ideogram", "recraft"]
"""The last two are image vendors' own shapes: their calls only ever pass through (``api.image_vendors``)."""

TRANSLATABLE: frozenset[str] = frozenset({"openai", "anthropic", "gemini"})
"""Formats that chat calls can be translated to and from."""


@dataclass(frozen=True, slots=True)
class ChannelKind:
    wire_format: WireFormat
    auth_header: str
    """Header that carries the upstream key."""
    auth_scheme: str = ""
    """Prefix of the header value (``"Bearer "``), empty for a bare key."""
    fixed_headers: dict[str, str] = field(default_factory=dict)
    responses_api: bool = False
    """Serves OpenAI's ``/v1/responses`` itself; otherwise a Responses call is translated to the channel's chat."""

    def auth_headers(self, api_key: str) -> dict[str, str]:
        headers = dict(self.fixed_headers)
        if api_key:
            headers[self.auth_header] = self.auth_scheme + api_key
        return headers


_OPENAI = ChannelKind("openai", "Authorization", "Bearer ")
# OpenAI-compatible vendors mostly have chat only: Responses calls to them are translated (type ``openai`` for
# a vendor that has ``/v1/responses`` too).

CHANNEL_KINDS: dict[str, ChannelKind] = {
    "openai": ChannelKind("openai", "Authorization", "Bearer ", responses_api=True),
    "deepseek": _OPENAI,
    "openai-compatible": _OPENAI,
    "anthropic": ChannelKind("anthropic", "x-api-key", fixed_headers={"anthropic-version": "2023-06-01"}),
    "gemini": ChannelKind("gemini", "x-goog-api-key"),
    # Image vendors with synchronous APIs of their own (``api.image_vendors``): base URLs as their docs give them,
    # ``https://api.ideogram.ai`` and ``https://external.api.recraft.ai/v1``.
    "ideogram": ChannelKind("ideogram", "Api-Key"),
    "recraft": ChannelKind("recraft", "Authorization", "Bearer "),
}
