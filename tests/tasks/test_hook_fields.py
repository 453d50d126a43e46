"""A client's webhook never reaches the upstream, whichever of a family's hook fields carry it."""

from __future__ import annotations

from omnirelay.providers.task_vendors.base import pop_hook


def test_every_hook_field_leaves_the_payload_and_the_first_set_one_wins() -> None:
    payload = {"prompt": "a cat", "notify_hook": "", "notifyHook": "https://a.example/h", "callback_url": "https://b"}
    assert pop_hook(payload, "notify_hook", "notifyHook", "callback_url") == "https://a.example/h"
    assert payload == {"prompt": "a cat"}


def test_no_hook_and_non_strings() -> None:
    payload = {"prompt": "x", "notify_hook": 42}
    assert pop_hook(payload, "notify_hook", "notifyHook") is None
    assert payload == {"prompt": "x"}
