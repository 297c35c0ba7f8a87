"""Serve a local folder (e.g. a documentation mirror) over HTTP on 127.0.0.1 so it can be crawled."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

# Debian's python3.11-doc package: 530 HTML pages with real site navigation and boilerplate
PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
PYTHON_DOCS_HINT = "install it with `apt-get install python3.11-doc` (or run `make python-docs`)"


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static file handler that logs requests at DEBUG instead of writing to stderr."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        logger.debug("%s %s", self.address_string(), format % args)


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve root on 127.0.0.1 at an ephemeral port; yields the base URL ('http://127.0.0.1:PORT/')."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot serve {root}: not a directory")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # request threads must not keep the process alive
    # a short poll interval makes shutdown() return quickly (it waits for the next poll)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"serve:{root}", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    base_url = f"http://{host}:{port}/"
    logger.info("serving %s at %s", root, base_url)
    try:
        yield base_url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def require_python_docs(root: Path = PYTHON_DOCS) -> Path:
    """Return the Python HTML docs folder, or raise an error that says how to install it."""
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"Python HTML documentation not found at {root}; {PYTHON_DOCS_HINT}")
    return root
