"""Embedded PostgreSQL (pgserver) for demo mode and tests.

pgserver keeps a list of owning pids in `<pgdata>/.handle_pids.json` and only stops the server
when the last one lets go.  A SIGKILLed owner leaves its pid behind forever, so dead pids are
pruned before we attach.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _prune_dead_pids(pgdata: Path) -> None:
    pid_file = pgdata / ".handle_pids.json"
    if not pid_file.exists():
        return
    try:
        pids = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
    if alive != pids:
        pid_file.write_text(json.dumps(alive))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A pgserver-managed PostgreSQL under `data_dir/pg`; blocking, call from a thread."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir.resolve() / "pg"
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server and return its DSN."""
        with warnings.catch_warnings():
            # Run as root without a login session, platformdirs warns that pgserver's lock file
            # falls back to /tmp: expected on servers and in CI, not worth a line per start.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            import pgserver  # imported lazily: only demo mode and tests need it

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        _prune_dead_pids(self.pgdata)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        uri: str = self._server.get_uri()
        log.info("embedded PostgreSQL ready in %s", self.pgdata)
        return uri

    def stop(self) -> None:
        """Stop the server unless another live process still holds it."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
