"""Every curl and SQL statement of the seed runbooks, read from their fenced code blocks.

A curl may span lines (`\\` continuations) and pipe into `jq`; SQL sits in ```sql blocks or
inside a ```bash block (runbook 001's token-expiry query, runbook 003's cursor reset)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "tests" / "fixtures" / "seeds"  # a copy of ../shared/seeds, kept equal by a test
SHARED_SEEDS = REPO.parent / "shared" / "seeds"

FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
SQL_START = re.compile(r"^(SELECT|UPDATE|INSERT|DELETE|WITH)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Curl:
    seed: str
    method: str
    url: str
    headers: tuple[str, ...] = ()
    data: str | None = None
    jq: str | None = None
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class Sql:
    seed: str
    text: str

    @property
    def verb(self) -> str:
        return self.text.split(None, 1)[0].upper()


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, the body's indentation removed."""
    blocks = []
    for match in FENCE.finditer(text):
        lines = match.group(2).splitlines()
        indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
        blocks.append((match.group(1).lower(), "\n".join(line[indent:] for line in lines)))
    return blocks


def logical_lines(body: str) -> list[str]:
    """Lines with their `\\` continuations joined."""
    return body.replace("\\\n", " ").splitlines()


def parse_curl(seed: str, line: str) -> Curl:
    command, _, pipe = line.partition("|")
    args = shlex.split(command)
    method, url, data, headers = "GET", "", None, []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg in ("-X", "--request"):
            method, i = args[i + 1], i + 1
        elif arg in ("-H", "--header"):
            headers.append(args[i + 1])
            i += 1
        elif arg in ("-d", "--data"):
            data, i = args[i + 1], i + 1
        elif not arg.startswith("-"):
            url = arg
        i += 1
    if data is not None and method == "GET":
        method = "POST"
    jq = shlex.split(pipe)[1] if pipe.strip().startswith("jq") else None
    return Curl(seed, method, url, tuple(headers), data, jq, line.strip())


def sql_in(body: str) -> list[str]:
    """The statements of a block: each starts with a SQL verb at the start of a line and ends
    at its semicolon (comments and shell lines around it are not SQL)."""
    statements: list[str] = []
    current: list[str] = []
    for line in body.splitlines():
        if not current and not SQL_START.match(line.strip()):
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append(" ".join(part.strip() for part in current).rstrip(";").strip())
            current = []
    return statements


def seed_commands(folder: Path = SEEDS) -> tuple[list[Curl], list[Sql]]:
    curls: list[Curl] = []
    sqls: list[Sql] = []
    for path in sorted(folder.glob("*.txt")):
        for language, body in code_blocks(path.read_text(encoding="utf-8")):
            if language in ("bash", "sh", "shell", ""):
                lines = [line.strip() for line in logical_lines(body)]
                curls += [parse_curl(path.name, line) for line in lines if line.startswith("curl ")]
            if language in ("sql", "bash", "sh", "shell", ""):
                sqls += [Sql(path.name, text) for text in sql_in(body)]
    return curls, sqls
