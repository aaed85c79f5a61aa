"""Finding and loading manifest files: the one module that imports `yaml`.

The loader is strict where PyYAML is lenient and bounded where YAML is not:
- a duplicate key in one mapping is an error (PyYAML silently keeps the last one);
- a key that YAML reads as something other than a string (`on:`, `1:`) is an error;
- a file over `MAX_FILE_BYTES`, a document that expands past `MAX_NODES` through aliases
  (a "billion laughs"), or nesting past `MAX_DEPTH` fails fast with a clear message;
- text must be UTF-8; every error carries a 1-based line and column.

Documents are composed by libyaml (`yaml.CSafeLoader`, when available) into nodes, then
turned into plain Python values here; the nodes are kept so that a validation error can be
pointed at the exact line and column of the offending value.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # bound at run time by `_import_yaml`, on the first parse
    import yaml
    from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MANIFEST_SUFFIXES = (".yaml", ".yml")
STDIN = "-"
STDIN_NAME = "<stdin>"

MAX_FILE_BYTES = 1024 * 1024  # manifests are a few hundred bytes; this is a mistake or an attack
PRESCAN_BYTES = 64 * 1024  # larger files are counted event by event before any node is built
MAX_NODES = 100_000  # per file, and per document after alias expansion
MAX_DEPTH = 64  # a manifest is about 6 levels deep

_TAG = "tag:yaml.org,2002:"
STR_TAG = _TAG + "str"
MAP_TAG = _TAG + "map"
SEQ_TAG = _TAG + "seq"
MERGE_TAG = _TAG + "merge"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("null", "bool", "int", "float", "timestamp", "binary"))

# What YAML made of a plain scalar that was meant as a string, for error messages.
TAG_NAMES = {
    _TAG + "null": "null",
    _TAG + "bool": "a boolean",
    _TAG + "int": "an integer",
    _TAG + "float": "a number",
    _TAG + "timestamp": "a date",
    _TAG + "binary": "binary data",
}

_PathItem = str | int


# ---- results --------------------------------------------------------------------------


class Issue(NamedTuple):
    """A problem found while loading: 1-based position (0 when none), path, text."""

    line: int
    column: int
    path: tuple[_PathItem, ...]
    message: str


class Document(NamedTuple):
    """One non-empty YAML document of a file."""

    line: int  # 1-based line where its content starts
    data: Any  # plain Python values: dict, list, str, int, float, bool, None
    root: object  # the composed node tree; opaque outside this module
    issues: list[Issue]  # duplicate or non-string keys, unsupported tags, limits


class LoadedFile(NamedTuple):
    documents: list[Document]
    issues: list[Issue]  # file-level: unreadable, too large, not UTF-8, YAML syntax


class NodeInfo(NamedTuple):
    """Where a value is, and how it was written."""

    line: int  # 1-based
    column: int  # 1-based
    kind: str  # "scalar" | "mapping" | "sequence"
    text: str | None = None  # the scalar as written (unquoted), None for collections
    plain: bool = False  # a plain (unquoted) scalar, whose type YAML guessed
    tag: str = ""


# ---- discovery ------------------------------------------------------------------------


def discover(paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Manifest files under `paths`, in order, and (path, message) for paths that failed.

    Directories are searched recursively for *.yaml / *.yml (hidden directories skipped,
    names sorted); a file named explicitly is read whatever its suffix; `-` is stdin.
    Each file is listed once, as the user's path joined with the relative path found.
    """
    files: list[str] = []
    failed: list[tuple[str, str]] = []
    seen: set[str] = set()
    cwd = os.getcwd()

    def add(path: str) -> None:
        key = path if path == STDIN else os.path.normpath(os.path.join(cwd, path))
        if key not in seen:
            seen.add(key)
            files.append(path)

    for root in paths:
        if root == STDIN:
            add(STDIN)
            continue
        try:
            mode = os.stat(root).st_mode
        except OSError as error:
            failed.append((root, _os_reason(error)))
            continue
        except ValueError:  # an embedded NUL byte
            failed.append((root, "not a valid path"))
            continue
        if not stat.S_ISDIR(mode):
            add(root)
            continue
        found: list[str] = []
        errors: list[OSError] = []
        for directory, subdirs, names in os.walk(root, onerror=errors.append):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            found.extend(
                os.path.join(directory, name) for name in names if name.endswith(MANIFEST_SUFFIXES)
            )
        for walk_error in errors:
            failed.append((walk_error.filename or root, _os_reason(walk_error)))
        for path in sorted(found):
            add(path)
    return files, failed


def _os_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "no such file or directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    return f"cannot read: {error.strerror or error}"


# ---- reading --------------------------------------------------------------------------


def read_source(path: str) -> tuple[bytes | None, Issue | None]:
    """The bytes of a file (or stdin), refusing anything over MAX_FILE_BYTES."""
    try:
        if path == STDIN:
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            # O_NONBLOCK: a FIFO named *.yaml must not hang us; fstat refuses it below.
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
            try:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode):
                    return None, Issue(0, 0, (), "not a regular file")
                data = _read_all(fd, status.st_size)
            finally:
                os.close(fd)
    except OSError as error:
        return None, Issue(0, 0, (), _os_reason(error))
    except ValueError:
        return None, Issue(0, 0, (), "not a valid path")
    if len(data) > MAX_FILE_BYTES:
        return None, Issue(
            0, 0, (), f"file is larger than {MAX_FILE_BYTES >> 20} MiB; refusing to parse it"
        )
    return data, None


def _read_all(fd: int, size_hint: int = 0) -> bytes:
    # One read when the size is known: asking one byte more and getting exactly the size
    # means the end was reached. Otherwise (it grew, or a short read), read on.
    want = min(size_hint, MAX_FILE_BYTES) + 1 if size_hint else 64 * 1024
    chunks = [os.read(fd, want)]
    total = len(chunks[0])
    if size_hint and total == size_hint:
        return chunks[0]
    while chunks[-1] and total <= MAX_FILE_BYTES:
        chunks.append(os.read(fd, 64 * 1024))
        total += len(chunks[-1])
    return b"".join(chunks)


def load_file(path: str) -> LoadedFile:
    data, issue = read_source(path)
    if data is None:
        return LoadedFile([], [issue] if issue else [])
    return load_bytes(data)


def load_bytes(data: bytes) -> LoadedFile:
    """Every document of one file; never raises on bad input."""
    loader_class = _import_yaml()
    text_issue = _check_utf8(data)
    if text_issue is not None:
        return LoadedFile([], [text_issue])
    if len(data) > PRESCAN_BYTES:
        issue = _prescan(data, loader_class)
        if issue is not None:
            return LoadedFile([], [issue])
    documents: list[Document] = []
    issues: list[Issue] = []
    loader = loader_class(data)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            document = _document(node, loader, aliases=b"*" in data)
            if document is not None:
                documents.append(document)
    except yaml.MarkedYAMLError as error:
        issues.append(_syntax_issue(error))
    except yaml.reader.ReaderError as error:
        line, column = _byte_position(data, error.position)
        issues.append(Issue(line, column, (), f"unacceptable character: {error.reason}"))
    except yaml.YAMLError as error:
        issues.append(Issue(0, 0, (), f"YAML error: {error}"))
    except RecursionError:
        issues.append(Issue(0, 0, (), f"nested deeper than {MAX_DEPTH} levels"))
    finally:
        loader.dispose()
    return LoadedFile(documents, issues)


def _check_utf8(data: bytes) -> Issue | None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, column = _byte_position(data, error.start)
        return Issue(
            line,
            column,
            (),
            f"not UTF-8 text (byte 0x{data[error.start]:02x}); save the file as UTF-8",
        )
    return None


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(data)))
    before = data[:offset]
    line_start = before.rfind(b"\n") + 1
    column = len(before[line_start:].decode("utf-8", errors="replace")) + 1
    return before.count(b"\n") + 1, column


def _syntax_issue(error: yaml.MarkedYAMLError) -> Issue:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    problem = (error.problem or "invalid YAML").strip()
    if error.context and error.context_mark is not None and error.context_mark is not mark:
        context = error.context.strip()
        where = error.context_mark.line + 1
        problem = f"{problem} ({context} started at line {where})"
    elif error.context:
        problem = f"{problem} ({error.context.strip()})"
    return Issue(line, column, (), f"YAML syntax error: {problem}")


def _prescan(data: bytes, loader_class: Any) -> Issue | None:
    """Count events of a large file without building nodes (bounded memory)."""
    count = 0
    try:
        for event in yaml.parse(data, Loader=loader_class):
            if isinstance(event, yaml.NodeEvent):
                count += 1
                if count > MAX_NODES:
                    mark = event.start_mark
                    line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
                    return Issue(
                        line,
                        column,
                        (),
                        f"more than {MAX_NODES} YAML nodes in one file; refusing to load it",
                    )
    except yaml.YAMLError:
        return None  # the real parse reports it with its position
    return None


# ---- the loader -----------------------------------------------------------------------


def _import_yaml() -> Any:
    """Import PyYAML and bind it and its node classes here, once; the loader class.

    Not at import time: PyYAML costs about 120M instructions (some 40 ms) to import, and a
    plan or apply whose files are all in the validation cache parses nothing.  Everything
    below that uses them is reached from `load_bytes`, or is handed a node it made.
    """
    loader = globals().get("_Loader")
    if loader is not None:
        return loader
    import yaml
    from yaml import nodes

    globals().update(
        yaml=yaml,
        Node=nodes.Node,
        MappingNode=nodes.MappingNode,
        ScalarNode=nodes.ScalarNode,
        SequenceNode=nodes.SequenceNode,
        _Loader=_loader_class(getattr(yaml, "CSafeLoader", yaml.SafeLoader)),
    )
    return globals()["_Loader"]


def _loader_class(base: Any) -> Any:
    class _Loader(base):  # type: ignore[misc]
        """CSafeLoader with a leaner resolver; nodes are converted by `_Builder`, not
        PyYAML."""

        def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
            if kind is ScalarNode:
                if implicit[0]:
                    resolvers = self.yaml_implicit_resolvers.get(value[:1], ())
                    for tag, regexp in resolvers:
                        if regexp.match(value):
                            return str(tag)
                return STR_TAG
            return SEQ_TAG if kind is SequenceNode else MAP_TAG

        def descend_resolver(self, current_node: Any, current_index: Any) -> None:
            return None  # no path resolvers: skip PyYAML's per-node bookkeeping

        def ascend_resolver(self) -> None:
            return None

    return _Loader


class _Limit(Exception):
    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def _document(root: Node, loader: Any, *, aliases: bool) -> Document | None:
    line = root.start_mark.line + 1
    if isinstance(root, ScalarNode) and root.tag == _TAG + "null" and root.value == "":
        return None  # an empty document (only comments, or `---` alone)
    try:
        if aliases:
            _measure(root)
        builder = _Builder(loader)
        data = builder.build(root, (), 0)
    except _Limit as limit:
        mark = limit.node.start_mark
        issue = Issue(mark.line + 1, mark.column + 1, (), limit.message)
        return Document(line, None, root, [issue])
    return Document(line, data, root, builder.issues)


def _measure(root: Node) -> None:
    """Refuse alias bombs and recursive aliases before expanding anything.

    Sizes are memoised per node, so this is linear in the composed graph even when the
    expanded document would be astronomically large.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Node, depth: int) -> int:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in active:
            raise _Limit(node, "an alias refers to the mapping or sequence that contains it")
        if depth > MAX_DEPTH:
            raise _Limit(node, f"nested deeper than {MAX_DEPTH} levels")
        total = 1
        if isinstance(node, (MappingNode, SequenceNode)):
            active.add(key)
            children = (
                [n for pair in node.value for n in pair]
                if isinstance(node, MappingNode)
                else node.value
            )
            for child in children:
                total += size(child, depth + 1)
                if total > MAX_NODES:
                    raise _Limit(
                        node,
                        f"aliases expand this document past {MAX_NODES} nodes "
                        "(an alias bomb?); refusing to load it",
                    )
            active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


_intern = sys.intern
_INTERN_MAX = 40


class _Builder:
    """Nodes to plain values, recording duplicate and non-string keys as issues."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.issues: list[Issue] = []

    def issue(self, node: Node, path: tuple[_PathItem, ...], message: str) -> None:
        mark = node.start_mark
        self.issues.append(Issue(mark.line + 1, mark.column + 1, path, message))

    def build(self, node: Node, path: tuple[_PathItem, ...], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _Limit(node, f"nested deeper than {MAX_DEPTH} levels")
        cls = node.__class__
        if cls is ScalarNode:
            if node.tag == STR_TAG:
                value = node.value
                # The same short strings recur in every manifest: share one copy of each.
                return _intern(value) if len(value) <= _INTERN_MAX else value
            return self.scalar(node, path)
        if cls is MappingNode:
            if node.tag != MAP_TAG:
                self.issue(node, path, f"tag {_tag_name(node.tag)} is not supported in manifests")
            return self.mapping(node, path, depth)
        if node.tag != SEQ_TAG:
            self.issue(node, path, f"tag {_tag_name(node.tag)} is not supported in manifests")
        return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]

    def scalar(self, node: Node, path: tuple[_PathItem, ...]) -> Any:
        tag = node.tag
        if tag in _SCALAR_TAGS:
            try:
                return self.loader.yaml_constructors[tag](self.loader, node)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError):
                self.issue(node, path, f"cannot read {node.value!r} as {TAG_NAMES[tag]}")
                return node.value
        self.issue(node, path, f"tag {_tag_name(tag)} is not supported in manifests")
        return node.value

    def mapping(self, node: Node, path: tuple[_PathItem, ...], depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: list[dict[Any, Any]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged.extend(self.merge_sources(value_node, path, depth))
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in result:
                self.issue(
                    key_node,
                    (*path, key),
                    f"duplicate key {key!r} in this mapping (YAML would keep only the last)",
                )
            result[key] = self.build(value_node, (*path, key), depth + 1)
        if not merged:
            return result
        combined: dict[Any, Any] = {}
        for source in merged:  # earlier sources win, explicit keys win over all
            for key, value in source.items():
                combined.setdefault(key, value)
        combined.update(result)
        return combined

    def merge_sources(
        self, node: Node, path: tuple[_PathItem, ...], depth: int
    ) -> list[dict[Any, Any]]:
        if isinstance(node, MappingNode):
            return [self.mapping(node, path, depth + 1)]
        if isinstance(node, SequenceNode) and all(isinstance(n, MappingNode) for n in node.value):
            return [self.mapping(n, path, depth + 1) for n in node.value]
        self.issue(node, path, "a merge key (<<) needs a mapping or a list of mappings")
        return []

    def key(self, node: Node, path: tuple[_PathItem, ...]) -> str | None:
        if node.__class__ is ScalarNode:
            if node.tag == STR_TAG:
                return _intern(node.value)
            what = TAG_NAMES.get(node.tag, f"tag {_tag_name(node.tag)}")
            self.issue(
                node,
                (*path, node.value),
                f"key {node.value!r} is read by YAML as {what}, not a string; "
                f'quote it: "{node.value}"',
            )
            return str(node.value)
        self.issue(node, path, "a mapping key must be a plain string, not a collection")
        return None


# ---- positions ------------------------------------------------------------------------


def _lookup(node: Node, key: str) -> tuple[Node, Node] | None:
    """The (key, value) nodes the builder kept for `key`: the last explicit one, else merged."""
    merges: list[Node] = []
    for key_node, value_node in reversed(node.value):
        if key_node.tag == MERGE_TAG:
            merges.append(value_node)
        elif key_node.__class__ is ScalarNode and key_node.value == key:
            return key_node, value_node
    for merge in reversed(merges):
        sources = merge.value if isinstance(merge, SequenceNode) else [merge]
        for source in sources:
            if isinstance(source, MappingNode):
                found = _lookup(source, key)
                if found is not None:
                    return found
    return None


def _walk(root: object, path: Sequence[_PathItem]) -> tuple[Node, Node | None, int]:
    """The deepest node along `path`, the key node that led to it, and how far it got."""
    node = root
    assert isinstance(node, Node)
    key_node: Node | None = None
    for depth, item in enumerate(path):
        if isinstance(node, MappingNode) and isinstance(item, str):
            found = _lookup(node, item)
            if found is None:
                return node, key_node, depth
            key_node, node = found
        elif isinstance(node, SequenceNode) and isinstance(item, int) and item < len(node.value):
            key_node, node = None, node.value[item]
        else:
            return node, key_node, depth
    return node, key_node, len(path)


def _info(node: Node) -> NodeInfo:
    mark = node.start_mark
    if isinstance(node, ScalarNode):
        return NodeInfo(
            mark.line + 1,
            mark.column + 1,
            "scalar",
            str(node.value),
            node.style in (None, ""),
            node.tag,
        )
    kind = "mapping" if isinstance(node, MappingNode) else "sequence"
    return NodeInfo(mark.line + 1, mark.column + 1, kind, tag=node.tag)


def value_at(root: object, path: Sequence[_PathItem]) -> NodeInfo:
    """The value at `path` (or the nearest ancestor found), for pointing an error at it."""
    node, _, _ = _walk(root, path)
    return _info(node)


def key_at(root: object, path: Sequence[_PathItem]) -> NodeInfo:
    """The key node of the last item of `path` (or the value, for a list item)."""
    node, key_node, reached = _walk(root, path)
    if reached == len(path) and key_node is not None:
        return _info(key_node)
    return _info(node)


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def dotted(path: Sequence[_PathItem]) -> str:
    """`spec.brokerage.environment`, `spec.brokerage.cash[0]`, `metadata.labels["a.b"]`."""
    out = ""
    for item in path:
        if isinstance(item, int):
            out += f"[{item}]"
        elif _PLAIN_KEY.match(item):
            out += f".{item}" if out else item
        else:
            out += f'["{_escape(item)}"]'
    return out


def _escape(text: str) -> str:
    """Quotes, backslashes and unprintable characters escaped, the rest kept as written."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return "".join(out)
