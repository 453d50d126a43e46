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

from omnirelay.providers.task_vendors.base import TaskResults

FILES_PREFIX = "/files/tasks/"
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "video/mp4": ".mp4",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
}


class ResultTooLarge(Exception):
    pass


class LocalStore:
    def __init__(self, root: str | Path, *, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def path_of(self, public_id: str, name: str) -> Path | None:
        """The file behind ``/files/tasks/<public_id>/<name>``, or None for a name that could escape the root."""
        if not _SAFE.match(public_id) or not _SAFE.match(name) or name.startswith("."):
            return None
        path = self.root / public_id / name
        return path if path.is_file() else None

    async def keep(self, http: aiohttp.ClientSession, public_id: str, results: TaskResults) -> TaskResults:
        """Fetch every result into the store; the returned results point at the stored copies."""
        urls: dict[tuple[str, int], str] = {}
        folder = self.root / public_id
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        for kind, index, media in results.all_media():
            if media.url.startswith(FILES_PREFIX):
                continue
            extension = _EXTENSIONS.get(media.content_type) or mimetypes.guess_extension(media.content_type) or ".bin"
            name = f"{kind}-{index}{extension}"
            async with http.get(media.url, timeout=aiohttp.ClientTimeout(total=300), allow_redirects=True) as answer:
                answer.raise_for_status()
                data = await answer.content.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise ResultTooLarge(f"{kind} {index} is larger than {self.max_bytes} bytes")
            await asyncio.to_thread((folder / name).write_bytes, data)
            urls[(kind, index)] = f"{FILES_PREFIX}{public_id}/{name}"
        return results.replace_urls(urls)


def absolute(results: TaskResults, base_url: str) -> TaskResults:
    """Stored paths made into URLs a client can open."""
    base = base_url.rstrip("/")
    urls = {(kind, i): base + m.url for kind, i, m in results.all_media() if m.url.startswith(FILES_PREFIX)}
    return results.replace_urls(urls) if urls else results
