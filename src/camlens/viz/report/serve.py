"""Serve a report on this machine only (127.0.0.1), with Python's own http.server."""

from __future__ import annotations

import functools
import http.server
import os
from pathlib import Path

from ...core.errors import InputError

__all__ = ["make_server", "report_url"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, no directory listings of the run's photos elsewhere, no request log."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (the base class's name)
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()


def make_server(root: str | os.PathLike, port: int = 0) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the files under ``root`` on 127.0.0.1 (``port`` 0: any free port).

    Call ``serve_forever()`` on it; ``server.server_address`` says the port.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"cannot serve {str(root)!r}: not a folder")
    handler = functools.partial(_QuietHandler, directory=str(root))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as error:
        raise InputError(f"cannot listen on 127.0.0.1:{port} ({error.strerror}); pass another --port, or 0 for any") from None


def report_url(server: http.server.HTTPServer, root: Path, index: Path) -> str:
    """The address of ``index`` (a file under ``root``) on ``server``."""
    host, port = server.server_address[:2]
    relative = Path(os.path.relpath(index, root)).as_posix()
    return f"http://{host}:{port}/{relative}"
