"""What Claude Code sends that a plain Messages request does not: system messages in the middle of
``messages`` and ``context_management`` that clears thinking while keeping all of it. Both must translate for
any upstream; context editing that would change what the model sees stays Anthropic-only (a 400)."""

from __future__ import annotations

import orjson
import pytest

from omnirelay.formats.anthropic_messages import anthropic_request_to_ir
from omnirelay.formats.ir import Format, InvalidRequest, UnsupportedField
from omnirelay.formats.translate import translate_request

CLAUDE_CODE_BODY: dict[str, object] = {
    "model": "claude-opus-4-8",
    "max_tokens": 64000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1"},
        {"type": "text", "text": "You are a Claude agent.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "say hi", "cache_control": {"type": "ephemeral"}}]},
        {"role": "system", "content": "Available agent types: claude, Explore."},
        {"role": "system", "content": [{"type": "text", "text": "Skills: none."}]},
    ],
    "thinking": {"type": "adaptive"},
    "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "metadata": {"user_id": "{}"},
}


def test_mid_conversation_system_messages_join_the_system_prompt() -> None:
    request = anthropic_request_to_ir(CLAUDE_CODE_BODY)
    assert request.system == [
        "x-anthropic-billing-header: cc_version=2.1",
        "You are a Claude agent.",
        "Available agent types: claude, Explore.",
        "Skills: none.",
    ]
    assert [m.role for m in request.messages] == ["user"]
    assert request.extras == [], "keeping all thinking is no edit at all"


@pytest.mark.parametrize("upstream", ["openai", "gemini"])
def test_claude_code_request_translates(upstream: Format) -> None:
    out = orjson.loads(translate_request("anthropic", upstream, CLAUDE_CODE_BODY, upstream_model="m").body)
    text = orjson.dumps(out).decode()
    assert "Available agent types" in text and "say hi" in text
    assert "context_management" not in out


def test_bad_system_message_content_names_its_path() -> None:
    body = {**CLAUDE_CODE_BODY, "messages": [{"role": "system", "content": [{"type": "text"}]}]}
    with pytest.raises(InvalidRequest) as caught:
        anthropic_request_to_ir(body)
    assert caught.value.param == "messages[0].content[0].text"


@pytest.mark.parametrize(
    "edits",
    [
        [{"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}],
        [{"type": "clear_tool_uses_20250919"}],
    ],
)
def test_context_editing_that_changes_the_context_stays_anthropic_only(edits: list[object]) -> None:
    body = {**CLAUDE_CODE_BODY, "context_management": {"edits": edits}}
    with pytest.raises(UnsupportedField) as caught:
        translate_request("anthropic", "openai", body)
    assert caught.value.field == "context_management"
    passthrough = orjson.loads(translate_request("anthropic", "anthropic", body).body)
    assert passthrough["context_management"] == {"edits": edits}
