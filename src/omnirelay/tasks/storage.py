"""Keeping finished results: vendor URLs expire (Midjourney's CDN links, FAL's and Replicate's after an hour or a
day), so the engine can fetch each result once and serve it from the gateway's own directory.

Files live under ``<storage_dir>/<public id>/<kind>-<n><ext>``; the task's results then hold the path
``/files/tasks/<public id>/<name>``, made absolute when a client reads the task (``public_base_url``, else the URL
the client called). The public id is 24 random hex digits, which is what keeps a file private: the route needs no
key, so browsers and media players can load it. S3-compatible storage is not built.
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
from pathlib import Path

import aiohttp
import structlog

from omnirelay.providers.media import FetchRefused, iter_capped, open_url, require_ok
from omnirelay.providers.task_vendors.base import TaskResults

log = structlog.get_logger(__name__)

FILES_PREFIX = "/files/tasks/"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/svg+xml": ".svg",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}


WRITE_BATCH = 1024 * 1024
"""Bytes gathered before each write to disk (one thread hop each, not one per network chunk)."""


class LocalStore:
    """Results kept on disk. Each is fetched through the safe fetcher (``providers.media.open_url``): redirects
    followed and re-checked, no private address unless ``allow_private`` (``media_fetch_allow_private``, as for
    every URL the gateway fetches), at most ``max_bytes`` each (streamed to disk, never held whole in memory),
    within ``timeout_s`` each."""

    def __init__(
        self, root: str | Path, *, max_bytes: int, allow_private: bool = False, timeout_s: float = 300.0
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self.timeout_s = timeout_s

    def path_of(self, public_id: str, name: str) -> Path | None:
        """The file behind ``/files/tasks/<public_id>/<name>``, or None for a name that could escape the root."""
        if not _SAFE.match(public_id) or not _SAFE.match(name) or name.startswith("."):
            return None
        path = self.root / public_id / name
        return path if path.is_file() else None

    async def put(self, public_id: str, name: str, data: bytes, content_type: str) -> str:
        """Store ``data`` as ``<name><ext>`` under ``public_id``; the path it is served at (``/files/tasks/...``).
        Image vendors' synchronous results are kept this way too (``api.media.ResultHost``)."""
        extension = _EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".bin"
        folder = self.root / public_id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread((folder / f"{name}{extension}").write_bytes, data)
        return f"{FILES_PREFIX}{public_id}/{name}{extension}"

    async def keep(self, http: aiohttp.ClientSession, public_id: str, results: TaskResults) -> TaskResults:
        """Fetch every result into the store; the returned results point at the stored copies. Raises
        :class:`FetchRefused` (logged with its reason) when one cannot be kept: the poller then hands out the
        vendor's URLs, as for any failure to keep."""
        urls: dict[tuple[str, int], str] = {}
        folder = self.root / public_id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        for kind, index, media in results.all_media():
            if media.url.startswith(FILES_PREFIX):
                continue
            extension = _EXTENSIONS.get(media.content_type) or mimetypes.guess_extension(media.content_type) or ".bin"
            name = f"{kind}-{index}{extension}"
            try:
                await self._fetch_to(http, media.url, folder / name)
            except FetchRefused as refused:
                log.warning("task_result_refused", task=public_id, result=f"{kind}-{index}", reason=str(refused))
                raise
            urls[(kind, index)] = f"{FILES_PREFIX}{public_id}/{name}"
        return results.replace_urls(urls)

    async def _fetch_to(self, http: aiohttp.ClientSession, url: str, path: Path) -> None:
        """Stream ``url``'s body into ``path``; nothing is left at ``path`` if it fails."""
        try:
            async with open_url(http, url, timeout_s=self.timeout_s, allow_private=self.allow_private) as answer:
                require_ok(answer)
                with await asyncio.to_thread(path.open, "wb") as file:
                    pending: list[bytes] = []
                    size = 0
                    async for chunk in iter_capped(answer, self.max_bytes):
                        pending.append(chunk)
                        size += len(chunk)
                        if size >= WRITE_BATCH:
                            await asyncio.to_thread(file.write, b"".join(pending))
                            pending, size = [], 0
                    await asyncio.to_thread(file.write, b"".join(pending))
        except BaseException:
            await asyncio.to_thread(path.unlink, missing_ok=True)
            raise


def absolute(results: TaskResults, base_url: str) -> TaskResults:
    """Stored paths made into URLs a client can open."""
    base = base_url.rstrip("/")
    urls = {(kind, i): base + m.url for kind, i, m in results.all_media() if m.url.startswith(FILES_PREFIX)}
    return results.replace_urls(urls) if urls else results
