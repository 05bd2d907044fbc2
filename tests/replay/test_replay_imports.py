"""Import hygiene: replay never loads textual or mitmproxy (house style's layering rule)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_RECORDER = {"recorder.model", "recorder.sse", "recorder.jsonrpc", "recorder.store", "recorder.asgi_thread",
                    "recorder.listen",
                    # the leaf UsageError (replay/cli.py already imported it)
                    "recorder.usage",
                    # issue 12: the pure fault core and the shared --fault options (serve --fault)
                    "recorder.faults", "recorder.fault_stream", "recorder.fault_options"}
ALLOWED_RECORDER |= {"recorder.junit", "recorder.json_paths"}  # the one JUnit writer, shared with `ssetap check`


def test_import_replay_engine_loads_neither_textual_nor_mitmproxy() -> None:
    code = ("import sys, replay.engine, replay.mock, replay.cli, replay.pytest_plugin;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'mitmproxy'));"
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_replay_imports_only_the_allowed_recorder_modules() -> None:
    for path in sorted((ROOT / "replay").glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("textual", "mitmproxy", "tui", "sqlite3"), (path, name)
                if top == "recorder":
                    assert name in ALLOWED_RECORDER, (path, name)
