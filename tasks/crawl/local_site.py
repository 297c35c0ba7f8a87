"""Serve a local folder (e.g. a documentation mirror) over HTTP on 127.0.0.1 so it can be crawled."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

# Debian's python3.11-doc package: 530 HTML pages with real site navigation and boilerplate
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
PYTHON_DOCS_HINT = "install it with `apt-get install python3.11-doc` (or run `make python-docs`)"


def file_etag(path: Path) -> str:
    """A strong ETag from a file's modification time (ns) and size, as nginx and Apache derive theirs."""
    stat = path.stat()
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


class ConditionalFileHandler(SimpleHTTPRequestHandler):
    """Static files with validators: ETag and Last-Modified on every file, 304 to a matching request.

    SimpleHTTPRequestHandler answers If-Modified-Since (to the second) only; the ETag also tells
    apart two versions saved within one second, and If-None-Match wins over If-Modified-Since
    (RFC 9110 13.2.2).
    """

    _etag: str | None = None

    def _file(self) -> Path | None:
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            if not self.path.split("?", 1)[0].endswith("/"):
                return None  # the handler redirects to the slashed URL
            path = next((path / n for n in ("index.html", "index.htm") if (path / n).is_file()), path)
        return path if path.is_file() else None

    def send_head(self):  # noqa: ANN201 (stdlib signature: a file object or None)
        file = self._file()
        self._etag = file_etag(file) if file is not None else None
        if_none_match = self.headers.get("If-None-Match")
        if self._etag is not None and if_none_match is not None:
            tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
            if self._etag in tags or "*" in tags:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.end_headers()
                return None
        return super().send_head()  # answers If-Modified-Since when no If-None-Match was sent

    def end_headers(self) -> None:
        if self._etag is not None:
            self.send_header("ETag", self._etag)
        super().end_headers()


class _QuietHandler(ConditionalFileHandler):
    """Static file handler that logs requests at DEBUG instead of writing to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s %s", self.address_string(), format % args)


@contextmanager
def serve_loopback(handler: Callable[..., BaseHTTPRequestHandler], name: str = "loopback") -> Iterator[str]:
    """Run a threaded HTTP server for `handler` on 127.0.0.1 at an ephemeral port; yields its base URL
    ('http://127.0.0.1:PORT/') and stops the server (and its thread) on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # request threads must not keep the process alive
    # a short poll interval makes shutdown() return quickly (it waits for the next poll)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"serve:{name}", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield f"http://{host}:{port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve root on 127.0.0.1 at an ephemeral port; yields the base URL ('http://127.0.0.1:PORT/')."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot serve {root}: not a directory")
    with serve_loopback(functools.partial(_QuietHandler, directory=str(root)), name=str(root)) as base_url:
        logger.info("serving %s at %s", root, base_url)
        yield base_url


def require_python_docs(root: Path = PYTHON_DOCS) -> Path:
    """Return the Python HTML docs folder, or raise an error that says how to install it."""
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"Python HTML documentation not found at {root}; {PYTHON_DOCS_HINT}")
    return root
