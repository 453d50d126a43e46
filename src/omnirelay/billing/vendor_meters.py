"""Meters for image answers whose shape is not OpenAI's ``data`` list.

Imagen's ``:predict`` answers ``{"predictions": [{"bytesBase64Encoded", "mimeType"}, ...]}``: one prediction per
image made (an image filtered by safety comes back as a prediction with ``raiFilteredReason`` and no bytes, and is
not billed). Everything else (the reservation for ``sampleCount`` images, nothing billed without an answer) is
:class:`~omnirelay.billing.meters.ImageMeter`'s.
"""

from __future__ import annotations

import orjson

from omnirelay.billing.meters import ImageMeter
from omnirelay.formats.usage import Usage


class PredictionsMeter(ImageMeter):
    """Per image in an Imagen ``:predict`` answer."""

    def read(self, payload: bytes) -> Usage:
        self.done = True
        try:
            parsed = orjson.loads(payload)
        except orjson.JSONDecodeError:
            parsed = None
        predictions = parsed.get("predictions") if isinstance(parsed, dict) else None
        if isinstance(predictions, list):
            self.returned = sum(1 for p in predictions if isinstance(p, dict) and p.get("bytesBase64Encoded"))
        return Usage()
