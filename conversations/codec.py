"""Replies to and from JSON, so queued messages can wait in the outbox table.

Example::

    payload = reply_to_json(Reply.text("hello"))
    assert reply_from_json(payload) == Reply.text("hello")
"""

from __future__ import annotations

from typing import Any

from conversations.messages import Block, Choices, Facts, Field, Form, Link, Option, Reply, Text, TextStyle


def _option(o: Option) -> dict[str, Any]:
    return {"id": o.id, "label": o.label, "primary": o.primary, "danger": o.danger}


def _block_to_json(block: Block) -> dict[str, Any]:
    match block:
        case Text(text=text, style=style):
            return {"type": "text", "text": text, "style": style.value}
        case Facts(items=items, title=title):
            return {"type": "facts", "title": title, "items": [list(i) for i in items]}
        case Choices(id=cid, prompt=prompt, options=options):
            return {"type": "choices", "id": cid, "prompt": prompt, "options": [_option(o) for o in options]}
        case Link(url=url, label=label):
            return {"type": "link", "url": url, "label": label}
        case Form():
            return {
                "type": "form",
                "id": block.id,
                "title": block.title,
                "submit_label": block.submit_label,
                "errors": dict(block.errors),
                "context": dict(block.context),
                "fields": [
                    {
                        "name": f.name,
                        "label": f.label,
                        "kind": f.kind,
                        "required": f.required,
                        "options": [_option(o) for o in f.options],
                        "initial": f.initial,
                        "max_length": f.max_length,
                        "placeholder": f.placeholder,
                        "hint": f.hint,
                    }
                    for f in block.fields
                ],
            }
    raise TypeError(f"not a block: {block!r}")


def _option_from(d: dict[str, Any]) -> Option:
    return Option(id=d["id"], label=d["label"], primary=d.get("primary", False), danger=d.get("danger", False))


def _block_from_json(d: dict[str, Any]) -> Block:
    kind = d["type"]
    if kind == "text":
        return Text(d["text"], TextStyle(d.get("style", "plain")))
    if kind == "facts":
        return Facts(items=tuple((str(a), str(b)) for a, b in d["items"]), title=d.get("title"))
    if kind == "choices":
        return Choices(id=d["id"], prompt=d["prompt"], options=tuple(_option_from(o) for o in d["options"]))
    if kind == "link":
        return Link(url=d["url"], label=d["label"])
    if kind == "form":
        return Form(
            id=d["id"],
            title=d["title"],
            submit_label=d.get("submit_label", "Submit"),
            errors=d.get("errors", {}),
            context=d.get("context", {}),
            fields=tuple(
                Field(
                    name=f["name"],
                    label=f["label"],
                    kind=f["kind"],
                    required=f["required"],
                    options=tuple(_option_from(o) for o in f["options"]),
                    initial=f.get("initial"),
                    max_length=f.get("max_length"),
                    placeholder=f.get("placeholder"),
                    hint=f.get("hint"),
                )
                for f in d["fields"]
            ),
        )
    raise ValueError(f"unknown block type {kind!r}")


def reply_to_json(reply: Reply) -> dict[str, Any]:
    return {
        "blocks": [_block_to_json(b) for b in reply.blocks],
        "replaces_previous": reply.replaces_previous,
        "ignored_action": reply.ignored_action,
        "refused_action": reply.refused_action,
    }


def reply_from_json(payload: dict[str, Any]) -> Reply:
    return Reply(
        blocks=tuple(_block_from_json(b) for b in payload["blocks"]),
        replaces_previous=bool(payload.get("replaces_previous", False)),
        ignored_action=bool(payload.get("ignored_action", False)),
        refused_action=bool(payload.get("refused_action", False)),
    )
