"""What the sign-in and sign-up pages say about a marketplace install waiting to be claimed.

A marketplace install ("install-first") ends on the claim link, which needs a signed-in person,
so an anonymous visitor reaches the sign-in page with `next` pointing at that link. Only the
integrations app knows installs, and the core never imports it: the app registers a describer
here from its AppConfig.ready() (as it registers a pruner in conduit/pruning.py). The pages ask
with the `next` path; without a describer, or for a `next` that is not a claim link, nothing
is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class InstallNotice:
    """`description` names the CRM and account ("HubSpot portal 4400001 (acme.hubspot.com)"); it
    is '' when the link names no install that is pending and unexpired, and the page then shows
    only a neutral line."""

    description: str = ""


class InstallDescriber(Protocol):
    def describe(self, next_path: str) -> InstallNotice | None:
        """A notice when `next_path` is a claim link, else None."""
        ...


_describers: list[InstallDescriber] = []


def register_install_describer(describer: InstallDescriber) -> None:
    if all(type(d) is not type(describer) for d in _describers):
        _describers.append(describer)


def install_notice(next_path: str) -> InstallNotice | None:
    """The notice for the page reached with `next` = `next_path` (already a safe relative path)."""
    if not next_path:
        return None
    for describer in _describers:
        if (notice := describer.describe(next_path)) is not None:
            return notice
    return None
