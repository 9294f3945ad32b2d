"""A one-page HTML rendering of the AsyncAPI document (``docs/asyncapi.html``).

Rendered from the document itself, so the page cannot say anything the YAML does not: a table
of channels (key, message, partitions, retention, cleanup policy, owner, consumers, dead-letter
twin), the header schemas, and each message's ``.proto`` source. Static, no scripts, no
network: it opens from a checkout. (AsyncAPI's own HTML template needs its generator and a
React build; this page needs nothing.)
"""

from __future__ import annotations

from html import escape
from typing import Any, Final

STYLE: Final = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 76rem; padding: 0 1rem;
       color: #1d232a; }
h1, h2, h3 { line-height: 1.2; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #d5dbe1; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { text-align: left; vertical-align: top; padding: .35rem .5rem;
         border-bottom: 1px solid #e4e8ec; }
th { background: #f3f5f7; font-weight: 600; }
code { font-size: 90%; } pre { background: #f6f8fa; padding: .8rem; overflow-x: auto;
       font-size: 13px; line-height: 1.35; border-radius: 4px; }
.muted { color: #5f6b77; } ul.plain { margin: 0; padding-left: 1rem; }
"""


def _code(text: object) -> str:
    return f"<code>{escape(str(text))}</code>"


def retention(ms: int) -> str:
    """``retention.ms`` for a person: ``-1`` is forever, whole days or hours when exact."""
    if ms == -1:
        return "forever"
    for unit, size in (("day", 86_400_000), ("hour", 3_600_000), ("minute", 60_000)):
        if ms % size == 0:
            count = ms // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{ms} ms"


def _consumers(items: list[dict[str, Any]]) -> str:
    if not items:
        return '<span class="muted">none in the suite</span>'
    rows = [
        f"<li>{escape(c['service'])} "
        + (_code(c["group"]) if c["group"] else '<span class="muted">(no group)</span>')
        + f' <span class="muted">{escape(c["purpose"])}</span></li>'
        for c in items
    ]
    return '<ul class="plain">' + "".join(rows) + "</ul>"


def _channel_row(name: str, channel: dict[str, Any]) -> str:
    kafka = channel["bindings"]["kafka"]
    config = kafka["topicConfiguration"]
    (message,) = channel["messages"]
    if "x-zerocontact-dead-letter-topic" in channel:
        dlq = _code(channel["x-zerocontact-dead-letter-topic"])
    elif "x-zerocontact-dead-letter-of" in channel:
        dlq = f"is the dead-letter topic of {_code(channel['x-zerocontact-dead-letter-of'])}"
    else:
        dlq = '<span class="muted">none</span>'
    cells = [
        f'<a id="{escape(name)}"></a>{_code(name)}',
        escape(channel["x-zerocontact-key"]),
        f'<a href="#message-{escape(message)}">{_code(message)}</a>',
        str(kafka["partitions"]),
        escape(retention(config["retention.ms"])),
        escape(",".join(config["cleanup.policy"])),
        escape(channel["x-zerocontact-owner"]),
        _consumers(channel["x-zerocontact-consumers"]),
        dlq,
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _headers_table(name: str, schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td>{_code(header)}</td><td>{'yes' if header in required else 'no'}</td>"
        f"<td>{escape(prop['description'])}"
        + (f" Always {_code(prop['const'])}." if "const" in prop else "")
        + "</td></tr>"
        for header, prop in schema["properties"].items()
    )
    return (
        f"<h3>{escape(name)}</h3><p>{escape(schema['description'])}</p>"
        "<table><tr><th>header</th><th>required</th><th>meaning</th></tr>"
        f"{rows}</table>"
    )


def _message(key: str, message: dict[str, Any]) -> str:
    payload = message["payload"]
    headers = message["headers"]
    # A topic's message narrows the shared CloudEvents headers to its own ce_type values.
    parts = headers.get("allOf", [headers])
    header_ref = parts[0]["$ref"].rpartition("/")[2]
    types = [t for p in parts[1:] for t in p["properties"]["ce_type"]["enum"]]
    key_text = message["bindings"]["kafka"]["key"]["description"]
    intro = (
        f"<p>{escape(message['summary'])} Key: {escape(key_text)}. "
        f'Headers: <a href="#{escape(header_ref)}">{escape(header_ref)}</a>.'
    )
    if types:
        intro += " <code>ce_type</code> is one of: " + ", ".join(_code(t) for t in types) + "."
    if "schema" in payload:
        source = message.get("x-zerocontact-proto", "")
        body = f" Source: {_code(source)}.</p><pre>{escape(payload['schema'])}</pre>"
    else:
        body = f" Payload: {escape(payload['description'])}</p>"
    return f'<h3 id="message-{escape(key)}">{_code(key)}</h3>{intro}{body}'


def render_html(doc: dict[str, Any]) -> str:
    """The page for an AsyncAPI document built by ``deploy/tools/asyncapi.py``."""
    info = doc["info"]
    components = doc["components"]
    heads = ("topic", "key", "message", "partitions", "retention", "cleanup", "owner")
    header_cells = "".join(f"<th>{h}</th>" for h in (*heads, "consumers", "dead-letter"))
    channels = "".join(_channel_row(name, ch) for name, ch in doc["channels"].items())
    headers = "".join(
        f'<a id="{escape(name)}"></a>{_headers_table(name, schema)}'
        for name, schema in components["schemas"].items()
    )
    messages = "".join(_message(k, m) for k, m in components["messages"].items())
    return f"""<!DOCTYPE html>
<!-- GENERATED by deploy/tools/asyncapi.py from docs/asyncapi.yaml's sources: do not edit. -->
<html lang="en">
<head><meta charset="utf-8"><title>{escape(info["title"])}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{STYLE}</style></head>
<body>
<h1>{escape(info["title"])}</h1>
<p>{escape(info["description"])} AsyncAPI {escape(doc["asyncapi"])}:
<a href="asyncapi.yaml">asyncapi.yaml</a>.</p>
<h2>Channels</h2>
<table><tr>{header_cells}</tr>
{channels}</table>
<h2>Headers</h2>
{headers}
<h2>Messages</h2>
{messages}
</body>
</html>
"""
