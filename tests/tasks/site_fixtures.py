"""Test websites on 127.0.0.1: a tiny static site that counts requests, and a hostile generated site."""

from __future__ import annotations

import functools
import gzip
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tasks.crawl.local_site import ConditionalFileHandler, serve_loopback

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
    # (path, If-None-Match, If-Modified-Since) of every request, in arrival order
    validators: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    stop_after: int | None = None  # set `stop` after this many page (non-robots) requests
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        return self.requests.count(path)

    @property
    def page_requests(self) -> list[str]:
        return [p for p in self.requests if p != "/robots.txt"]


class _SlowResponses:
    """Responses that never finish by themselves, shared by the plain and the hostile test sites.

    The handler's `site` has `closing` (an Event), `lock` and `aborted` (paths the client cut off).
    """

    def _drip_headers(self) -> None:
        started = time.monotonic()
        try:
            self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Padding: ")
            while time.monotonic() - started < DRIP_LIMIT and not self.site.closing.is_set():
                time.sleep(DRIP_INTERVAL)
                self.wfile.write(b"a")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self.site.lock:
                self.site.aborted.add(self.path)

    def _stall(self) -> Iterator[bytes]:
        started = time.monotonic()
        while time.monotonic() - started < DRIP_LIMIT and not self.site.closing.is_set():
            time.sleep(DRIP_INTERVAL)
        yield b""


class _SiteHandler(_SlowResponses, ConditionalFileHandler):
    """Static files (with ETag/Last-Modified and 304s) plus a redirect (/moved -> /c.html) and a wrong
    charset on /mojibake.html."""

    def __init__(self, *args, site: SiteServer, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        with self.site.lock:
            self.site.requests.append(self.path)
            self.site.validators.append((self.path, self.headers.get("If-None-Match"),
                                         self.headers.get("If-Modified-Since")))
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
    site = SiteServer(base_url="", stop_after=stop_after)
    with serve_loopback(functools.partial(_SiteHandler, site=site, directory=str(root)), "site") as base_url:
        site.base_url = base_url
        yield site


# ---------------------------------------------------------------------------------------------
# A hostile site: every page generated by the handler, nothing stored on disk

FRENCH_TEXT = "Le café est délicieux et la crème brûlée aussi, voilà une phrase naïve pour l'été qui reste."
RUSSIAN_TEXT = ("Москва — столица России, крупнейший по численности населения город страны. Город расположен "
                "на реке Москве в центре Восточно-Европейской равнины. Здесь находятся органы власти, "
                "множество музеев, театров и университетов.")
GERMAN_TEXT = ("Die Straßenbahn fährt jeden Morgen pünktlich um sieben Uhr über die alte Brücke in die "
               "Innenstadt, wo die Geschäfte gerade ihre Türen öffnen und der Markt beginnt.")
DUPLICATE_TEXT = "This paragraph appears on two pages word for word, so only one copy should reach the corpus."
# a long page and its near copy (one word changed): word 5-gram Jaccard ~0.9, far above MinHash 14x8's ~0.72
NEAR_DUPLICATE_TEXT = " ".join(
    f"Sentence {i} of the long page tells the reader about rivers, bridges, trains and the weather in spring."
    for i in range(25))
NEAR_DUPLICATE_EDITED = NEAR_DUPLICATE_TEXT.replace("Sentence 12 of", "Sentence twelve of")
HUGE_BYTES = 50 * 1024 * 1024  # the generated page is never held in memory or on disk
DRIP_INTERVAL = 0.05  # seconds between two dripped bytes
DRIP_LIMIT = 20.0  # the drip page gives up by itself after this many seconds (bounded test traffic)
RETRY_AFTER_HONOURED = 1  # seconds a 429 asks for, once
RETRY_AFTER_REFUSED = 3600  # seconds a 429 asks for, always: longer than any test's max_backoff_seconds
PNG_BYTES = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000") + bytes(range(256))

HOSTILE_LINKS = (
    "utf8-as-latin1.html", "cp1251-as-utf8.html", "mojibake.html", "broken.html", "de.html", "dup-a.html",
    "dup-b.html", "near-a.html", "near-b.html", "drip.html", "huge.html", "gzip-bomb.html", "loop-a", "self", "chain/1", "no-location",
    "offsite", "missing.html", "error.html", "flaky.html", "busy.html", "rate-limited.html", "hangup.html",
    "image.html", "bad-gzip.html", "private/secret.html", "http://other.invalid/page.html",
    "HTTP://LOCALHOST:{port}/a.html",  # this very server under another host name: out of scope too
)


@dataclass
class HostileSite:
    """What a test can observe of the hostile server."""

    base_url: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header), in arrival order
    aborted: set[str] = field(default_factory=set)  # paths whose response the client cut off
    closing: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


def _html(title: str, *paragraphs: str, links: tuple[str, ...] = (), charset: str = "utf-8") -> bytes:
    return _page(title, *paragraphs, links=links).encode(charset)


class _HostileHandler(_SlowResponses, BaseHTTPRequestHandler):
    """Serves the hostile pages; every response is generated."""

    def __init__(self, *args, site: HostileSite, **kwargs) -> None:
        self.site = site
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, chunks: Iterator[bytes], content_type: str = "text/html; charset=utf-8") -> None:
        """A response without Content-Length, written chunk by chunk until done or the client leaves."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        try:
            for chunk in chunks:
                if self.site.closing.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            with self.site.lock:
                self.site.aborted.add(self.path)

    def _huge(self) -> Iterator[bytes]:
        yield b"<html><head><title>Huge</title></head><body>"
        line = b"<p>" + b"all work and no play makes a very long page " * 20 + b"</p>\n"
        chunk = line * (65536 // len(line))
        for _ in range(HUGE_BYTES // len(chunk)):
            yield chunk

    def _drip(self) -> Iterator[bytes]:
        yield b"<html><head><title>Drip</title></head><body><p>"
        started = time.monotonic()
        while time.monotonic() - started < DRIP_LIMIT:
            time.sleep(DRIP_INTERVAL)
            yield b"."

    def do_GET(self) -> None:  # noqa: C901 (one branch per hostile page)
        with self.site.lock:
            self.site.requests.append((self.path, self.headers.get("Host", "")))
            times = self.site.count(self.path)
        path = self.path
        port = self.server.server_address[1]
        if path == "/robots.txt":
            self._send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        elif path == "/":
            links = tuple(link.format(port=port) for link in HOSTILE_LINKS)
            self._send(200, _html("Hostile index", "This index links to every hostile page of the site.", links=links))
        elif path == "/utf8-as-latin1.html":  # UTF-8 bytes, declared latin-1
            self._send(200, _html("Café", FRENCH_TEXT), "text/html; charset=iso-8859-1")
        elif path == "/cp1251-as-utf8.html":  # windows-1251 bytes, declared UTF-8
            self._send(200, _html("Москва", RUSSIAN_TEXT, charset="cp1251"), "text/html; charset=utf-8")
        elif path == "/mojibake.html":  # text that was already double-encoded before it was served
            self._send(200, _html("Mojibake", FRENCH_TEXT.encode("utf-8").decode("latin-1")))
        elif path == "/broken.html":
            self._send(200, (f"<html><head><title>Broken<body><div><p>{BROKEN_TEXT}<table><tr><td>"
                             '<a href="dup-a.html">dup</a></div></span></p><p>unclosed <b><i>').encode())
        elif path == "/de.html":
            self._send(200, _html("Straßenbahn", GERMAN_TEXT))
        elif path in ("/dup-a.html", "/dup-b.html", "/a.html"):
            self._send(200, _html("Duplicate", DUPLICATE_TEXT))
        elif path in ("/near-a.html", "/near-b.html"):
            self._send(200, _html("Near", NEAR_DUPLICATE_TEXT if path == "/near-a.html" else NEAR_DUPLICATE_EDITED))
        elif path == "/drip.html":
            self._stream(self._drip())
        elif path == "/huge.html":
            self._stream(self._huge())
        elif path == "/drip-headers.html":  # a status line, then one header byte at a time
            self._drip_headers()
        elif path == "/stall.html":  # headers, then silence
            self._stream(self._stall())
        elif path == "/gzip-bomb.html":
            self._send(200, _gzip_bomb(), headers={"Content-Encoding": "gzip"})
        elif path in ("/loop-a", "/loop-b", "/self"):
            target = {"/loop-a": "/loop-b", "/loop-b": "/loop-a", "/self": "/self"}[path]
            self._send(302, headers={"Location": target})
        elif path.startswith("/chain/"):  # /chain/1 -> /chain/2 -> ... without end
            self._send(302, headers={"Location": f"/chain/{int(path.rsplit('/', 1)[1]) + 1}"})
        elif path == "/no-location":
            self._send(302)
        elif path == "/offsite":
            self._send(301, headers={"Location": "http://other.invalid/landing.html"})
        elif path == "/error.html":
            self._send(500, b"<p>internal error</p>")
        elif path == "/flaky.html":  # 503 once, then fine
            if times == 1:
                self._send(503)
            else:
                self._send(200, _html("Flaky", "Served on the second try."))
        elif path == "/busy.html":  # 429 once with a short Retry-After, then fine
            if times == 1:
                self._send(429, headers={"Retry-After": str(RETRY_AFTER_HONOURED)})
            else:
                self._send(200, _html("Busy", "Served after the Retry-After wait was honoured."))
        elif path == "/rate-limited.html":
            self._send(429, headers={"Retry-After": str(RETRY_AFTER_REFUSED)})
        elif path == "/hangup.html":  # close the connection without any response
            self.close_connection = True
        elif path == "/image.html":
            self._send(200, PNG_BYTES)
        elif path == "/bad-gzip.html":  # declared gzip, is not
            self._send(200, b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
        elif path == "/raw-deflate.html":  # 'deflate' without the zlib wrapper, as some servers send it
            compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
            body = compressor.compress(_html("Deflate", DUPLICATE_TEXT)) + compressor.flush()
            self._send(200, body, headers={"Content-Encoding": "deflate"})
        elif path == "/gzip-members.html":  # two gzip members back to back (RFC 1952 2.2)
            page = _html("Members", DUPLICATE_TEXT)
            self._send(200, gzip.compress(page[:100]) + gzip.compress(page[100:]), headers={"Content-Encoding": "gzip"})
        elif path == "/gzip-cut.html":  # a gzip stream that stops before its end
            self._send(200, gzip.compress(_html("Cut", DUPLICATE_TEXT))[:-40], headers={"Content-Encoding": "gzip"})
        else:
            self._send(404, b"<p>not found</p>")


@functools.cache
def _gzip_bomb() -> bytes:
    """HUGE_BYTES of spaces, gzip-compressed to ~200 KB."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(HUGE_BYTES // len(block))) + compressor.flush()


@contextmanager
def serve_hostile_site() -> Iterator[HostileSite]:
    """Serve the hostile site on 127.0.0.1 (ephemeral port); yields the HostileSite."""
    site = HostileSite(base_url="")
    with serve_loopback(functools.partial(_HostileHandler, site=site), "hostile") as base_url:
        site.base_url = base_url
        try:
            yield site
        finally:
            site.closing.set()  # before the server stops: handlers that stall watch it


# ---------------------------------------------------------------------------------------------
# Slow sites that count the requests they answer at once


@dataclass
class ConcurrencyProbe:
    """Requests being answered at once, per server port and over every server sharing the probe."""

    active: Counter[int] = field(default_factory=Counter)
    most_per_server: Counter[int] = field(default_factory=Counter)
    active_total: int = 0
    most_total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def answering(self, port: int) -> Iterator[None]:
        with self.lock:
            self.active[port] += 1
            self.active_total += 1
            self.most_per_server[port] = max(self.most_per_server[port], self.active[port])
            self.most_total = max(self.most_total, self.active_total)
        try:
            yield
        finally:
            with self.lock:
                self.active[port] -= 1
                self.active_total -= 1


class _SlowHandler(BaseHTTPRequestHandler):
    """'/' links to /p0.html ... ; every page takes `seconds` to answer; no robots.txt (404)."""

    def __init__(self, *args, probe: ConcurrencyProbe, pages: int, seconds: float, **kwargs) -> None:
        self.probe, self.pages, self.seconds = probe, pages, seconds
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        with self.probe.answering(self.server.server_address[1]):
            if self.path == "/robots.txt":
                status, body = 404, b""
            else:
                time.sleep(self.seconds)
                links = tuple(f"p{i}.html" for i in range(self.pages)) if self.path == "/" else ()
                status, body = 200, _page(f"Page {self.path}", PARAGRAPH_A, links=links).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


@contextmanager
def serve_slow_site(probe: ConcurrencyProbe, pages: int = 10, seconds: float = 0.2) -> Iterator[str]:
    """A slow generated site on 127.0.0.1 reporting to probe; yields its base URL."""
    with serve_loopback(functools.partial(_SlowHandler, probe=probe, pages=pages, seconds=seconds), "slow") as base_url:
        yield base_url
