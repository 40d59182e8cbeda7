"""Ingest benchmark: `manage.py ingest_eml` on a generated mbox against a throwaway Postgres database.

Targets: >= 1000 messages/s and peak RSS < 200 MB for the ingest process. Prints the figures and
PASS/FAIL; exits 0 unless something broke (or, with --strict, a target was missed). The database
(conduit_bench_<pid> on BENCH_PG_URL) is dropped at the end, also on error.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import IO, NamedTuple
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "manage.py")
TARGET_RATE = 1000.0  # messages/s
TARGET_RSS_MB = 200.0
SAMPLE = (  # body text is random sequences of these words
    "please find the invoice for your order attached we will review the shipment that was delayed and "
    "confirm the refund to your account next week regarding the contract renewal pricing and the "
    "meeting schedule for the quarter review our support team opened a ticket for the escalation thanks"
)
WORDS = SAMPLE.split()
NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "olivia"]
DOMAINS = ["example.com", "acme.test", "globex.example", "initech.test", "umbrella.example"]


class Run(NamedTuple):
    seconds: float
    peak_rss_mb: float
    created: int
    duplicate: int


def address(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    return f"{name.title()} {rng.choice(NAMES).title()} <{name}.{rng.randrange(100)}@{rng.choice(DOMAINS)}>"


def paragraphs(rng: random.Random, size: int) -> str:
    lines: list[str] = []
    while sum(len(line) + 1 for line in lines) < size:
        if rng.random() < 0.02:
            lines.append("From the desk of the account manager:")  # must be escaped as >From
        lines.append(" ".join(rng.choices(WORDS, k=rng.randint(8, 14))).capitalize() + ".")
        if rng.random() < 0.15:
            lines.append("")
    return "\n".join(lines)


def message(rng: random.Random, i: int, when: datetime) -> tuple[str, str]:
    """(envelope sender, message text without the From_ line) for message number i."""
    sender = address(rng)
    headers = [
        f"From: {sender}",
        f"To: {', '.join(address(rng) for _ in range(rng.randint(1, 3)))}",
        *([f"Cc: {address(rng)}"] if rng.random() < 0.3 else []),
        f"Subject: {'Re: ' if rng.random() < 0.4 else ''}{' '.join(rng.choices(WORDS, k=5)).title()} #{i}",
        f"Date: {format_datetime(when)}",
        f"Message-ID: <bench-{i}-{rng.getrandbits(48):012x}@{rng.choice(DOMAINS)}>",
        "MIME-Version: 1.0",
    ]
    text = paragraphs(rng, rng.randint(1500, 3200))
    kind, boundary = rng.random(), f"=_bench_{i}_{rng.getrandbits(32):08x}"
    plain = 'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n' + text
    if kind < 0.10:  # multipart/alternative: plain + html
        html = "<html><body>" + "".join(f"<p>{p}</p>" for p in text.split("\n") if p) + "</body></html>"
        html_part = 'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: 8bit\n\n' + html
        parts, ctype = [plain, html_part], "multipart/alternative"
    elif kind < 0.12:  # multipart/mixed: plain + a small base64 attachment
        payload = base64.encodebytes(rng.randbytes(rng.randint(300, 1500))).decode()
        attachment = (
            f'Content-Type: application/pdf; name="doc-{i}.pdf"\nContent-Transfer-Encoding: base64\n'
            f'Content-Disposition: attachment; filename="doc-{i}.pdf"\n\n{payload}'
        )
        parts, ctype = [plain, attachment], "multipart/mixed"
    else:
        return sender, "\n".join(headers) + "\n" + plain
    body = "".join(f"--{boundary}\n{part}\n" for part in parts) + f"--{boundary}--"
    return sender, "\n".join(headers) + f'\nContent-Type: {ctype}; boundary="{boundary}"\n\n' + body


def write_mbox(path: Path, count: int, seed: int) -> int:
    """Stream `count` messages into an mbox file; returns the number of attachments written."""
    rng, attachments = random.Random(seed), 0
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        for i in range(count):
            when = start + timedelta(seconds=i * 137 + rng.randrange(120))
            sender, text = message(rng, i, when)
            attachments += "multipart/mixed" in text
            envelope = sender.partition("<")[2].rstrip(">")
            out.write(f"From {envelope} {when:%a %b %e %H:%M:%S %Y}\n")  # the mbox From_ line
            write_escaped(out, text)
    return attachments


def write_escaped(out: IO[str], text: str) -> None:
    for line in text.split("\n"):
        out.write((">" + line if line.startswith("From ") else line) + "\n")
    out.write("\n")


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, MANAGE, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def timed_ingest(env: dict[str, str], mbox: Path, log_dir: Path, label: str) -> Run:
    """Run ingest_eml alone in a child process; wait4 gives that child's own rusage."""
    out_path, err_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    cmd = [sys.executable, MANAGE, "ingest_eml", "--workspace", "bench", str(mbox)]
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
    if proc.returncode != 0:
        raise RuntimeError(f"ingest_eml ({label}) exited {proc.returncode}:\n{err_path.read_text()[-3000:]}")
    found = re.search(r"created (\d+), duplicate (\d+)", out_path.read_text())
    if not found:
        raise RuntimeError(f"ingest_eml ({label}) printed no summary: {out_path.read_text()!r}")
    # Linux reports ru_maxrss in KiB.
    return Run(seconds, usage.ru_maxrss / 1024, int(found.group(1)), int(found.group(2)))


def count_rows(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT set_config('conduit.system', 'on', false)")  # see every row under RLS
        row = conn.execute(
            "SELECT (SELECT count(*) FROM messages m WHERE m.workspace_id = w.id),"
            " (SELECT count(*) FROM attachments a WHERE a.workspace_id = w.id)"
            " FROM workspaces w WHERE w.slug = 'bench'"
        ).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="messages in the mbox (default 10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db-name", default=f"conduit_bench_{os.getpid()}")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db_url = urlsplit(server_url)._replace(path=f"/{args.db_name}").geturl()
    app_role = f"{args.db_name}_app"

    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(args.db_name)))
    try:
        with tempfile.TemporaryDirectory(prefix="conduit-bench-") as tmp_name:
            tmp = Path(tmp_name)
            env = {**os.environ, "DATABASE_URL": db_url, "CONDUIT_VAR_DIR": str(tmp / "var")}
            env.pop("MEDIA_ROOT", None)
            manage(env, "migrate", "--noinput", "-v", "0")
            orm = "from conduit.models import Workspace as W; W.objects.create(slug='bench', name='Bench')"
            manage(env, "shell", "-c", orm)
            # Ingest as the production app role would connect: no superuser, row-level
            # security enforced, so the figure includes the policies' cost.
            with psycopg.connect(db_url, autocommit=True) as owner:
                role = sql.Identifier(app_role)
                owner.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS").format(role))
                owner.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(role))
                owner.execute(
                    sql.SQL(
                        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}"
                    ).format(role)
                )
                owner.execute(
                    sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role)
                )
            app_url = (
                urlsplit(db_url)
                ._replace(netloc=f"{app_role}@{urlsplit(db_url).hostname}:{urlsplit(db_url).port or 5432}")
                .geturl()
            )
            ingest_env = {**env, "DATABASE_URL": app_url}

            mbox = tmp / "bench.mbox"
            started = time.perf_counter()
            attachments = write_mbox(mbox, args.messages, args.seed)
            size_mb = mbox.stat().st_size / 2**20
            print(
                f"mbox: {args.messages} messages, {size_mb:.1f} MB, {attachments} with attachments "
                f"(written in {time.perf_counter() - started:.1f} s); database {args.db_name}, "
                f"ingest as role {app_role} (RLS on), "
                f"DEBUG={os.environ.get('DEBUG', 'unset (settings default)')}"
            )

            first = timed_ingest(ingest_env, mbox, tmp, "first")
            rows, attachment_rows = count_rows(db_url)
            second = timed_ingest(ingest_env, mbox, tmp, "second")
            rows_after = count_rows(db_url)[0]
    finally:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(args.db_name))
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(drop)
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app_role)))

    n = args.messages
    rate = n / first.seconds
    rate_ok, rss_ok = rate >= TARGET_RATE, first.peak_rss_mb < TARGET_RSS_MB
    rows_ok = rows == n == first.created and attachment_rows == attachments
    dup_ok = second.created == 0 and second.duplicate == n and rows_after == n
    print(
        f"ingest: {n} messages in {first.seconds:.1f} s = {rate:.0f} messages/s "
        f"(target >= {TARGET_RATE:.0f}) {verdict(rate_ok)}   "
        f"peak RSS {first.peak_rss_mb:.0f} MB (target < {TARGET_RSS_MB:.0f} MB) {verdict(rss_ok)}"
    )
    print(
        f"rows: {rows} messages, {attachment_rows} attachments for workspace 'bench' "
        f"(expected {n}, {attachments}) {verdict(rows_ok)}"
    )
    print(
        f"re-ingest (all duplicates): created {second.created}, duplicate {second.duplicate} in "
        f"{second.seconds:.1f} s = {n / second.seconds:.0f} messages/s   "
        f"peak RSS {second.peak_rss_mb:.0f} MB {verdict(dup_ok)}"
    )
    if not (rows_ok and dup_ok):
        print("error: row counts or duplicate detection are wrong", file=sys.stderr)
        return 2
    targets_met = rate_ok and rss_ok
    print(f"overall: {verdict(targets_met)} (times include process start-up; figures are for one run)")
    return 1 if args.strict and not targets_met else 0


if __name__ == "__main__":
    sys.exit(main())
