"""The page's files, read once at start-up, each kept plain and gzip-compressed.

Asset URLs carry a version (a hash of all files): `/app/assets/<version>/app.js`. ES modules
import each other by relative URL, so they inherit it, and every asset can be cached for a year
as immutable; the HTML itself is revalidated on every load and names the current version.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

STATIC = Path(__file__).parent / "static"
TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def _asset(name: str, body: bytes) -> Asset:
    suffix = Path(name).suffix
    content_type = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("+xml"):
        content_type += "; charset=utf-8"
    digest = hashlib.sha256(body).hexdigest()[:16]
    return Asset(
        body=body,
        gzipped=gzip.compress(body, compresslevel=9, mtime=0),
        content_type=content_type,
        etag=f'"{digest}"',
    )


@dataclass(frozen=True)
class Assets:
    version: str
    files: dict[str, Asset]  # by name, index.html excluded
    index: Asset  # index.html with its asset version filled in


def load_assets(folder: Path = STATIC) -> Assets:
    raw = {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}
    version = hashlib.sha256(b"".join(name.encode() + body for name, body in raw.items()))
    short = version.hexdigest()[:12]
    index = raw.pop("index.html").replace(b"{{version}}", short.encode())
    return Assets(
        version=short,
        files={name: _asset(name, body) for name, body in raw.items()},
        index=_asset("index.html", index),
    )
