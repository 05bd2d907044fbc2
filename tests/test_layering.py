"""Import rules of the house style, checked by walking every module's imports with `ast`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = {"recorder/model.py", "recorder/sse.py", "recorder/ingest.py", "recorder/ingest_state.py", "recorder/listen.py", "recorder/jsonrpc.py", "recorder/correlate.py",
        "recorder/wire.py", "recorder/gaps.py",
        "recorder/redact.py", "recorder/redact_stage.py", "recorder/secrets.py",
        "recorder/json_paths.py", "recorder/faults.py",
        "recorder/fault_stream.py", "recorder/report.py", "replay/diff.py",
        "replay/matching.py", "replay/recorded.py", "replay/plan.py", "replay/catalog.py",
        "recorder/otel.py", "recorder/otel_live.py", "recorder/events.py",
        "recorder/store/event_rows.py",
        "recorder/handshake.py", "recorder/ingest_gaps.py"}
# Every module of the health package is a pure core too (new detectors included), except the
# schema check, which may import the official `mcp_types` wire models (pydantic).
PURE_PACKAGES = ("recorder/health/",)
SCHEMA_MODULES = {"recorder/health/spec/schema.py"}
STDLIB = set(sys.stdlib_module_names)


def is_pure(rel: str) -> bool:
    return rel in PURE or (rel.startswith(PURE_PACKAGES) and rel not in SCHEMA_MODULES)


def module_file(name: str) -> str:
    """The file of a first-party module name (a package's __init__.py for a package)."""
    path = ROOT / name.replace(".", "/")
    rel = name.replace(".", "/")
    return rel + "/__init__.py" if path.is_dir() else rel + ".py"


def imports(path: Path, *, module_level_only: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    nodes = _module_level(tree) if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _module_level(tree: ast.Module) -> list[ast.AST]:
    """Imports that run at import time (not those inside functions)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def modules() -> list[tuple[str, list[str]]]:
    out = []
    for package in ("recorder", "tui", "replay"):
        for path in sorted((ROOT / package).rglob("*.py")):
            out.append((str(path.relative_to(ROOT)), imports(path)))
    return out


def top(name: str) -> str:
    return name.split(".")[0]


def test_pure_cores_use_only_the_standard_library_and_orjson():
    for rel, names in modules():
        if not is_pure(rel):
            continue
        for name in names:
            assert top(name) in STDLIB or top(name) in ("orjson", "recorder", "replay"), (rel, name)
            if top(name) in ("recorder", "replay"):
                assert is_pure(module_file(name)), (rel, name)


def test_third_party_boundaries():
    for rel, names in modules():
        tops = {top(n) for n in names}
        if "mitmproxy" in tops:
            # fault_addon.py: the second addon (one addon class per module, as mitmproxy keeps
            # its own), which changes traffic on purpose for `record --fault`.
            assert rel in ("recorder/addon.py", "recorder/proxy.py", "recorder/fault_addon.py",
                           "recorder/importing/mitmflow.py"), rel
        if rel == "recorder/importing/mitmflow.py":
            # Reading flow files needs mitmproxy's reader, loaded only when one is imported.
            eager = {top(n) for n in imports(ROOT / rel, module_level_only=True)}
            assert "mitmproxy" not in eager, rel
        if "opentelemetry" in tops:
            # The protobuf messages of the live push have one home.
            assert rel == "recorder/otlp_push.py", rel
        if "mcp_types" in tops:
            assert rel in SCHEMA_MODULES, rel
        if "textual" in tops:
            assert rel.startswith("tui/"), rel
        if tops & {"sqlite3", "sqlite_utils"}:
            assert rel.startswith("recorder/store/"), rel
        front_door = rel == "recorder/cli.py" or rel.startswith("recorder/commands/")
        if rel.startswith("recorder/") and not front_door:
            # Only the front door and its commands reach up, lazily (the demo opens the TUI).
            assert not tops & {"tui", "replay"}, rel
        if front_door or rel in ("replay/commands.py", "tui/command.py"):
            # Building the parser must stay light: the work loads when a command runs.
            eager = {top(n) for n in imports(ROOT / rel, module_level_only=True)}
            assert not eager & {"tui", "replay", "textual", "mitmproxy"}, (rel, eager)
        if rel.startswith("replay/"):
            assert not tops & {"tui", "mitmproxy", "textual"}, rel


def test_every_module_opens_with_a_docstring():
    for package in ("recorder", "tui", "replay"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "__init__.py" and not path.read_text().strip():
                continue
            assert ast.get_docstring(ast.parse(path.read_text())), path


def test_replay_and_record_paths_load_no_ui():
    code = ("import sys, recorder.cli, recorder.ingest, recorder.worker\n"
            "import importlib.util\n"
            "if importlib.util.find_spec('replay.engine'): import replay.engine\n"
            "bad = [m for m in ('textual', 'mitmproxy') if m in sys.modules]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
