"""Where each upstream format expects each operation, relative to the channel's ``base_url``.

Base URLs are written as the vendor's official SDK takes them: OpenAI's includes ``/v1``; Anthropic's and
Gemini's are the bare host, and the API version is part of the path here.
"""

from __future__ import annotations

from omnirelay.providers.kinds import WireFormat

# (format, operation, stream) -> path template; {model} is the upstream model id.
PATHS: dict[tuple[WireFormat, str, bool], str] = {
    ("openai", "chat", False): "/chat/completions",
    ("openai", "chat", True): "/chat/completions",
    ("openai", "completions", False): "/completions",
    ("openai", "completions", True): "/completions",
    ("openai", "embeddings", False): "/embeddings",
    ("openai", "images_generations", False): "/images/generations",
    ("openai", "images_edits", False): "/images/edits",
    ("openai", "images_variations", False): "/images/variations",
    ("openai", "audio_transcriptions", False): "/audio/transcriptions",
    ("openai", "audio_transcriptions", True): "/audio/transcriptions",
    ("openai", "audio_translations", False): "/audio/translations",
    ("openai", "audio_speech", True): "/audio/speech",
    ("openai", "moderations", False): "/moderations",
    ("openai", "responses", False): "/responses",
    ("openai", "responses", True): "/responses",
    ("openai", "rerank", False): "/rerank",
    ("anthropic", "chat", False): "/v1/messages",
    ("anthropic", "chat", True): "/v1/messages",
    ("anthropic", "count_tokens", False): "/v1/messages/count_tokens",
    ("gemini", "chat", False): "/v1beta/models/{model}:generateContent",
    ("gemini", "chat", True): "/v1beta/models/{model}:streamGenerateContent",
    ("gemini", "count_tokens", False): "/v1beta/models/{model}:countTokens",
    ("gemini", "embed", False): "/v1beta/models/{model}:embedContent",
    ("gemini", "batch_embed", False): "/v1beta/models/{model}:batchEmbedContents",
    ("gemini", "predict", False): "/v1beta/models/{model}:predict",
    ("ideogram", "ideogram_generate", False): "/v1/ideogram-v3/generate",
    ("ideogram", "ideogram_edit", False): "/v1/ideogram-v3/edit",
    ("ideogram", "ideogram_remix", False): "/v1/ideogram-v3/remix",
    ("ideogram", "ideogram_upscale", False): "/upscale",
    ("ideogram", "ideogram_describe", False): "/describe",
    ("recraft", "recraft_generations", False): "/images/generations",
    ("recraft", "recraft_vectorize", False): "/images/vectorize",
    ("recraft", "recraft_remove_background", False): "/images/removeBackground",
    ("recraft", "recraft_clarity_upscale", False): "/images/clarityUpscale",
    ("recraft", "recraft_generative_upscale", False): "/images/generativeUpscale",
    ("recraft", "recraft_styles", False): "/styles",
}


def upstream_path(fmt: WireFormat, operation: str, model: str, stream: bool, *, gemini_sse: bool = True) -> str:
    path = PATHS[(fmt, operation, stream)].format(model=model)
    if fmt == "gemini" and stream and gemini_sse:
        path += "?alt=sse"
    return path
