"""The sandbox's few HTML pages: the state overview, the consent screen and the error page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1.5rem; color: #1f2933; background: #f7f8fa; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 2rem 0 .5rem; }
.sub { color: #52606d; margin: 0 0 1.5rem; }
.card { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; padding: 1.5rem 2rem; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: .92rem; }
th, td { border: 1px solid #d9e2ec; padding: .4rem .6rem; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
td.empty { color: #7b8794; font-style: italic; }
dl { display: grid; grid-template-columns: max-content auto; gap: .25rem 1rem; margin: 0; }
dt { color: #52606d; } dd { margin: 0; font-weight: 500; }
ul.scopes { padding-left: 1.25rem; } ul.scopes li { font-family: ui-monospace, monospace; }
.actions { display: flex; gap: .75rem; margin-top: 1.5rem; }
button { font: inherit; padding: .55rem 1.6rem; border-radius: 6px; border: 1px solid #9aa5b1;
         background: #fff; cursor: pointer; }
button.allow { background: #1f7a4d; border-color: #1f7a4d; color: #fff; }
.narrow { max-width: 36rem; margin: 3rem auto; }
.error { border-color: #e12d39; } .error h1 { color: #b3261e; }
"""


@dataclass
class Section:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    empty: str = "none yet"


def page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )


def cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else escape(str(value))


def table(section: Section) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in section.columns)
    if section.rows:
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in section.rows)
    else:
        body = f'<tr><td class="empty" colspan="{len(section.columns)}">{escape(section.empty)}</td></tr>'
    title = f"<h2>{escape(section.title)}</h2>"
    return f"{title}\n<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def facts(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items) + "</dl>"


def index_page(title: str, summary: list[tuple[str, str]], sections: list[Section]) -> str:
    body = (
        f"<h1>{escape(title)} sandbox</h1>\n"
        '<p class="sub">A local stand-in for the real API. Everything here lives in memory.</p>\n'
        f'<div class="card">{facts(summary)}</div>\n' + "\n".join(table(s) for s in sections)
    )
    return page(f"{title} sandbox", body)


def consent_page(
    title: str, account: str, client_id: str, scopes: list[str], action: str, hidden: dict[str, str]
) -> str:
    items = "".join(f"<li>{escape(s)}</li>" for s in scopes) or "<li>(no scopes requested)</li>"
    inputs = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in hidden.items()
    )
    body = (
        f'<div class="card narrow"><h1>{escape(title)}</h1>\n'
        f'<p class="sub">Connect the app <strong>{escape(client_id)}</strong> to {escape(account)}?</p>\n'
        f'<p>The app asks for these permissions:</p>\n<ul class="scopes">{items}</ul>\n'
        f'<form method="post" action="{escape(action)}">{inputs}\n<div class="actions">'
        '<button class="allow" type="submit" name="decision" value="allow">Allow</button>'
        '<button class="deny" type="submit" name="decision" value="deny">Deny</button>'
        "</div></form></div>"
    )
    return page(f"{title}: authorize", body)


def error_page(title: str, message: str) -> str:
    body = (
        f'<div class="card narrow error"><h1>{escape(title)}: this request cannot be authorized</h1>\n'
        f"<p>{escape(message)}</p></div>"
    )
    return page(f"{title}: error", body)
