"""The secrets corpus: distinctive secrets of every kind, and searching files for them."""

from __future__ import annotations

import base64
import secrets as random
import string
from dataclasses import dataclass, field
from pathlib import Path

from tests.recorder.capture_query import q

ALNUM = string.ascii_letters + string.digits


def random_secret(prefix: str = "", length: int = 40) -> str:
    """A distinctive random secret (letters and digits: the same bytes however it is encoded)."""
    return prefix + "".join(random.choice(ALNUM) for _ in range(length))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_jwt() -> str:
    body = _b64(b'{"sub":"' + random_secret().encode() + b'"}')
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.{random_secret(length=43)}"


def fake_aws_key_id() -> str:
    return "AKIA" + "".join(random.choice(string.ascii_uppercase + string.digits)
                            for _ in range(16))


@dataclass
class Corpus:
    """What the client sends; `secrets` also gathers what the servers hand out."""

    headers: dict[str, str]
    query: dict[str, str]
    password: str
    secrets: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls) -> Corpus:
        headers = {
            "X-Auth": random_secret("xauth"),
            "X-Api-Key": random_secret("apikey"),
            "X-Amz-Security-Token": random_secret("amz"),
            "Cookie": f"session={random_secret('cookie')}; theme=dark",
            "X-Debug": f"trace {fake_jwt()}",
            "X-Trace": f"key={fake_aws_key_id()}",
        }
        query = {name: random_secret(name.replace("-", "")) for name in (
            "access_key", "X-Amz-Signature", "jwt", "bearer", "authorization", "credentials",
            "client_key")}
        corpus = cls(headers, query, random_secret("pw"))
        corpus.secrets.update({f"header {k}": v.split("=", 1)[-1].split(";")[0].split()[-1]
                               for k, v in headers.items()})
        corpus.secrets.update({f"query {k}": v for k, v in query.items()})
        corpus.secrets["tool argument password"] = corpus.password
        return corpus


def files_written(directory: Path) -> list[Path]:
    found = [p for p in directory.iterdir() if p.is_file()]
    assert any(p.name.endswith(".db") for p in found)
    return found


def leaks(directory: Path, corpus: Corpus) -> dict[str, list[str]]:
    """Each secret found in any byte of any file under `directory` -> the files."""
    out: dict[str, list[str]] = {}
    contents = {p.name: p.read_bytes() for p in files_written(directory)}
    for label, secret in corpus.secrets.items():
        where = [name for name, data in contents.items() if secret.encode() in data]
        if where:
            out[label] = where
    return out


def shape_of(db: Path) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Sessions (transport) and calls (method, tool name, outcome): what must survive redaction."""
    sessions = q(db, "SELECT transport FROM sessions WHERE key LIKE 'sid:%' ORDER BY id")
    calls = q(db, "SELECT c.method, json_extract(m.json, '$.params.name'), c.outcome "
                  "FROM calls c JOIN messages m ON m.call_id = c.id AND m.direction = 'c2s' "
                  "ORDER BY c.id")
    return sessions, calls
