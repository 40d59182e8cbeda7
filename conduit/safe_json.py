"""JSON from outside (webhook deliveries, the ingest API), parsed so that no input can crash the
caller: every refusal is a SafeJsonError whose message says what is wrong, for a clear 400.

Refused: what is not JSON, numbers JSON has no room for (NaN, Infinity, 1e400, integers past
Python's digit limit), nesting deeper than `max_depth` (deep input would exhaust the recursion
of the parser or of the code that walks it), and, when `text_only`, strings holding a lone UTF-16
surrogate (valid JSON, but no UTF-8 text, so no database could store it).
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class SafeJsonError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise SafeJsonError(f"the JSON holds {name}, which is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SafeJsonError(f"the number {text[:40]} is too large")
    return value


def _check_tree(data: Any, *, max_depth: int, text_only: bool) -> None:
    """One walk without recursion: depth, and (when asked) strings that are not UTF-8 text."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise SafeJsonError(f"the JSON is nested deeper than {max_depth} levels")
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif text_only and isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise SafeJsonError("a string holds a lone UTF-16 surrogate, which is not text") from None


def loads_bounded(body: bytes | str, *, max_depth: int = MAX_DEPTH, text_only: bool = True) -> Any:
    try:
        data = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise SafeJsonError(f"the JSON is nested deeper than {max_depth} levels") from None
    except SafeJsonError:
        raise
    except UnicodeDecodeError:
        raise SafeJsonError("the body is not UTF-8 JSON") from None
    except ValueError as exc:  # JSONDecodeError, or an integer past the digit limit
        detail = "a number has too many digits" if "digits" in str(exc) else "the body is not JSON"
        raise SafeJsonError(detail) from None
    _check_tree(data, max_depth=max_depth, text_only=text_only)
    return data
