"""Task vendor families, one module each, described by :class:`~omnirelay.providers.task_vendors.base.TaskVendor`
(read its module docstring to add one). ``FAMILIES`` maps a family name to the import string of its class, so
adding a vendor is one row here and one module beside this one.
"""

from __future__ import annotations

import importlib
from functools import cache

from omnirelay.providers.task_vendors.base import TaskVendor

FAMILIES: dict[str, str] = {
    "midjourney": "omnirelay.providers.task_vendors.midjourney:MidjourneyVendor",
    "video": "omnirelay.providers.task_vendors.video:VideoVendor",
    "suno": "omnirelay.providers.task_vendors.suno:SunoVendor",
    "kling": "omnirelay.providers.task_vendors.kling:KlingVendor",
    "replicate": "omnirelay.providers.task_vendors.replicate:ReplicateVendor",
    "fal": "omnirelay.providers.task_vendors.fal:FalVendor",
}


def _load(spec: str) -> TaskVendor:
    module_name, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls()  # type: ignore[no-any-return]


@cache
def vendors() -> dict[str, TaskVendor]:
    """Every family, by name (built once)."""
    return {name: _load(spec) for name, spec in FAMILIES.items()}


@cache
def by_channel_type() -> dict[str, TaskVendor]:
    """Channel ``type`` → the family that speaks it."""
    return {kind: vendor for vendor in vendors().values() for kind in vendor.channel_types}


def vendor_for_channel_type(channel_type: str) -> TaskVendor | None:
    return by_channel_type().get(channel_type)
