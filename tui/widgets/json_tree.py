"""A JSON value as a foldable, syntax-coloured tree.

Children are added when a node is first expanded, and long arrays and objects show their
first items with a "more" marker, so a multi-megabyte result opens as fast as a small one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

MAX_CHILDREN = 200  # per expansion; the rest are summarised in one leaf
MAX_STRING = 400
OPEN_DEPTH = 3  # levels expanded when a value is shown

# Colours of Rich's JSON highlighter, so the tree reads like `ssetap show --json` in a terminal.
KEY_STYLE = "bold blue"
STYLES = {str: "green", int: "cyan", float: "cyan", bool: "italic magenta", type(None): "dim"}


def _scalar(value: Any) -> Text:
    if isinstance(value, str):
        shown = value if len(value) <= MAX_STRING else value[:MAX_STRING] + "…"
        return Text(repr_json_string(shown) + (f"  ({len(value):,} chars)"
                                               if len(value) > MAX_STRING else ""),
                    style=STYLES[str])
    if isinstance(value, bool):
        return Text("true" if value else "false", style=STYLES[bool])
    if value is None:
        return Text("null", style=STYLES[type(None)])
    return Text(str(value), style=STYLES.get(type(value), ""))


def repr_json_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped.replace(chr(13), chr(92) + "r").replace(chr(9), chr(92) + "t")}"'


def _summary(value: Any) -> Text:
    if isinstance(value, dict):
        return Text(f"{{…}} {len(value)} key{'s' if len(value) != 1 else ''}", style="dim")
    return Text(f"[…] {len(value)} item{'s' if len(value) != 1 else ''}", style="dim")


def _label(key: str | int | None, value: Any) -> Text:
    label = Text()
    if isinstance(key, str):
        label.append(repr_json_string(key), KEY_STYLE)
        label.append(": ")
    elif isinstance(key, int):
        label.append(f"{key}", "dim")
        label.append(": ")
    label.append_text(_summary(value) if isinstance(value, (dict, list)) else _scalar(value))
    return label


class JsonTree(Tree[Any]):
    """Shows one JSON value; `show(value)` replaces it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "expand_all", "Expand all"),
        Binding("E", "collapse_all", "Collapse all", show=False),
    ]

    DEFAULT_CSS = """
    JsonTree { background: transparent; }
    """

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__("(nothing selected)", name=name, id=id, classes=classes)
        self.show_root = True
        self.guide_depth = 2
        self.auto_expand = False
        self._filled: set[int] = set()  # ids of nodes whose children were added

    def show(self, value: Any, *, label: str = "") -> None:
        self.clear()
        self._filled.clear()
        root = self.root
        root.data = value
        if isinstance(value, (dict, list)):
            root.set_label(Text(label + " ", style="bold") + _summary(value) if label
                           else _summary(value))
            root.allow_expand = True
            self._open(root, OPEN_DEPTH)
        else:
            root.set_label(Text(label + " ", style="bold") + _scalar(value) if label
                           else _scalar(value))
            root.allow_expand = False
        self.cursor_line = 0
        self.scroll_home(animate=False)

    def _populate(self, node: TreeNode[Any]) -> None:
        value = node.data
        if node.id in self._filled or not isinstance(value, (dict, list)):
            return
        self._filled.add(node.id)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for count, (key, child) in enumerate(items):
            if count >= MAX_CHILDREN:
                node.add_leaf(Text(f"… {len(value) - MAX_CHILDREN:,} more (copy the message "
                                   "with y to see everything)", style="dim italic"))
                break
            if isinstance(child, (dict, list)) and child:
                node.add(_label(key, child), data=child)
            else:
                node.add_leaf(_label(key, child), data=child)

    def _open(self, node: TreeNode[Any], depth: int) -> None:
        self._populate(node)
        node.expand()
        if depth > 1:
            for child in node.children:
                if child.allow_expand and isinstance(child.data, (dict, list)) \
                        and len(child.data) <= 50:
                    self._open(child, depth - 1)

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Any]) -> None:
        self._populate(event.node)

    def action_expand_all(self) -> None:
        self._open(self.root, 6)

    def action_collapse_all(self) -> None:
        self.root.collapse_all()
        self.root.expand()
