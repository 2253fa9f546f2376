"""A strict little DOM of an HTML page, for the HTML reporters' tests.

:func:`parse` reads a page with the standard library's html.parser into :class:`Node`
trees and fails on an end tag that closes anything but the open element, or on an
element left open.
"""

from __future__ import annotations

import html.parser
from dataclasses import dataclass, field

VOID = {"meta", "br", "input", "link", "hr", "img", "wbr", "source", "area", "base", "col", "embed", "track"}


@dataclass
class Node:
    tag: str
    attrs: dict
    children: list = field(default_factory=list)
    parts: list = field(default_factory=list)

    @property
    def text(self) -> str:
        """All the text inside, as a browser shows it (tags dropped)."""
        return "".join(part if isinstance(part, str) else part.text for part in self.parts)

    def iter(self, tag: str | None = None):
        for child in self.children:
            if tag is None or child.tag == tag:
                yield child
            yield from child.iter(tag)

    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())


class TreeParser(html.parser.HTMLParser):
    """A strict little DOM: fails on an end tag that closes anything but the open element."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.declarations: list[str] = []

    def handle_decl(self, decl):
        self.declarations.append(decl)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        node = Node(tag, dict(attrs))
        self.stack[-1].children.append(node)
        self.stack[-1].parts.append(node)

    def handle_endtag(self, tag):
        assert len(self.stack) > 1 and self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data):
        self.stack[-1].parts.append(data)


def parse(page: str) -> TreeParser:
    parser = TreeParser()
    parser.feed(page)
    parser.close()
    assert [node.tag for node in parser.stack] == ["#document"], "unclosed elements"
    return parser
