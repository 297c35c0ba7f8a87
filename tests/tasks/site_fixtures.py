"""A tiny generated website and a real HTTP server on 127.0.0.1 that counts the requests it gets."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PARAGRAPH_A = "Alpha page explains how the crawler walks a site breadth first and keeps every page it may fetch."
PARAGRAPH_B = "Bravo page has the same text as its duplicate so that exact deduplication keeps only one copy."
PARAGRAPH_C = "Charlie page is only reachable through a redirect from an old address that the index still links to."
MOJIBAKE_TEXT = "Le café est délicieux et la crème brûlée aussi, voilà une phrase naïve pour l'été qui reste."
BROKEN_TEXT = "Broken markup still carries words that a forgiving parser should recover from the unclosed tags here."


def _page(title: str, *paragraphs: str, links: tuple[str, ...] = (), head: str = "") -> str:
    nav = " | ".join(f'<a href="{href}">{href}</a>' for href in links)
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (f"<!DOCTYPE html>\n<html><head>{head}<title>{title}</title></head>\n<body><nav>{nav}</nav>\n"
            f"<main><h1>{title}</h1>\n{body}</main></body></html>\n")


def make_site(root: Path) -> Path:
    """Write the test site into root and return root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "private").mkdir(exist_ok=True)
    files = {
        "robots.txt": "User-agent: *\nDisallow: /private/\n",
        "index.html": _page(
            "Index", "The index page links to everything that the crawler tests need to see in one place.",
            links=("a.html", "./a.html#details", "b.html", "dup.html", "private/secret.html", "notes.txt",
                   "moved", "mojibake.html", "broken.html", "missing.html", "http://other.invalid/page.html",
                   "mailto:someone@example.org"),
        ),
        "a.html": _page("Alpha", PARAGRAPH_A, "A second paragraph of the alpha page, with\nhard wrapped\nlines.",
                        links=("index.html",)),
        "b.html": _page("Bravo", PARAGRAPH_B),
        "dup.html": _page("Bravo", PARAGRAPH_B),  # same text as b.html at another URL
        "c.html": _page("Charlie", PARAGRAPH_C),
        "private/secret.html": _page("Secret", "This page is disallowed by robots.txt and must never be fetched."),
        "notes.txt": "plain text, not HTML, so the crawler must not keep it\n",
        "broken.html": (f"<html><head><title>Broken</title><body><div><p>{BROKEN_TEXT}"
                        "<p>Second <b>bold para</div></span>"),
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    # UTF-8 bytes that the server will declare as latin-1: the classic mojibake case
    (root / "mojibake.html").write_bytes(_page("Café", MOJIBAKE_TEXT).encode("utf-8"))
    return root


@dataclass
class SiteServer:
    """What a test can observe of the running server."""

    base_url: str
    requests: list[str] = field(default_factory=list)  # request paths, in arrival order
    stop_after: int | None = None  # set `stop` after this many page (non-robots) requests
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        return self.requests.count(path)

    @property
    def page_requests(self) -> list[str]:
        return [p for p in self.requests if p != "/robots.txt"]


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files plus a redirect (/moved -> /c.html) and a wrong charset on /mojibake.html."""

    def __init__(self, *args, site: SiteServer, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        with self.site.lock:
            self.site.requests.append(self.path)
            pages = len(self.site.page_requests)
        if self.site.stop_after is not None and pages >= self.site.stop_after:
            self.site.stop.set()
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/c.html")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/mojibake.html":
            body = (Path(self.directory) / "mojibake.html").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=iso-8859-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextmanager
def serve_site(root: Path, stop_after: int | None = None) -> Iterator[SiteServer]:
    """Serve root on 127.0.0.1 (ephemeral port) with request counting; yields the SiteServer."""
    site = SiteServer(base_url="")
    handler = functools.partial(_SiteHandler, site=site, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    site.base_url = f"http://127.0.0.1:{server.server_address[1]}/"
    site.stop_after = stop_after
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
