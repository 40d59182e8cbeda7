"""STUB (helper F replaces): stored events -> customer links and planned meeting writes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ProcessResult:
    processed: int = 0
    planned: int = 0
    failed: int = 0


def process_connection_events(connection_id: int) -> ProcessResult:
    return ProcessResult()
