"""The operator's bearer token for ``GET /metrics``: a random secret in a 0600 file.

/metrics shows counts across every account, so no account's API token opens it. The cloud creates
the file on its first start; Prometheus reads the same file (``authorization: credentials_file:``).
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from pathlib import Path

from private_files import private_dir, private_file

TOKEN_BYTES = 32
_MIN_LENGTH = 32


def ensure_metrics_token(path: Path) -> str:
    """The token in ``path``, created (0600) with a random one when the file does not exist."""
    if not path.exists():
        private_dir(path.parent)
        # Written aside, then linked into place: a process starting at the same time sees either
        # no file or a whole one, and the first link wins.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(TOKEN_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return load_metrics_token(path)


def load_metrics_token(path: Path) -> str:
    private_file(path)  # one copied in with looser permissions is tightened
    token = path.read_text().strip()
    if len(token) < _MIN_LENGTH:
        raise ValueError(f"the metrics token in {path} is shorter than {_MIN_LENGTH} characters")
    return token


def token_matches(expected: str, presented: str) -> bool:
    """Whether ``presented`` is the token, in time that does not depend on where they differ."""
    return hmac.compare_digest(expected.encode(), presented.encode())
