"""Where a flow may send the browser back to: a path on this site, never another host."""

from __future__ import annotations

from urllib.parse import urlsplit


def safe_relative_path(path: str | None) -> str:
    """'/x?y' passes; anything with a scheme, a host, '//' or a backslash becomes ''."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return ""
    parts = urlsplit(path)
    return path if not parts.scheme and not parts.netloc else ""
