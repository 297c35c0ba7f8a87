"""Crawl throughput against slow loopback sites, by concurrency setting (tasks/crawl/run.py); prints, asserts nothing.

Each of `--hosts` servers on 127.0.0.1 answers every page after `--latency` seconds (a remote site's
round trip and server time); its index links to `--pages` pages. The crawl runs once per
(max_concurrency, max_concurrency_per_host) setting, with delay_seconds=0 so only the limits bound it.

    PYTHONPATH=. python bench/crawl_bench.py
    PYTHONPATH=. python bench/crawl_bench.py --hosts 4 --pages 100 --latency 0.05
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

from tasks.crawl.config import CrawlConfig
from tasks.crawl.local_site import serve_loopback
from tasks.crawl.run import crawl

SETTINGS = ((1, 1), (4, 1), (4, 4), (16, 4), (16, 16))  # (max_concurrency, max_concurrency_per_host)


class _SlowPages(BaseHTTPRequestHandler):
    def __init__(self, *args, pages: int, latency: float, **kwargs) -> None:
        self.pages, self.latency = pages, latency
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        if self.path == "/robots.txt":
            body, status = b"User-agent: *\nAllow: /\n", 200
        else:
            time.sleep(self.latency)
            links = "".join(f'<a href="/p{i}.html">p{i}</a>' for i in range(self.pages)) if self.path == "/" else ""
            body, status = f"<html><body><p>page {self.path}</p>{links}</body></html>".encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--pages", type=int, default=50, help="pages per host, besides its index")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each page takes to answer")
    args = parser.parse_args()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        handler = functools.partial(_SlowPages, pages=args.pages, latency=args.latency)
        bases = [stack.enter_context(serve_loopback(handler, f"host{i}")) for i in range(args.hosts)]
        print(f"{args.hosts} hosts x {args.pages + 1} pages, {args.latency * 1000:.0f} ms per page")
        print(f"{'max_concurrency':>16} {'per_host':>9} {'pages':>6} {'seconds':>8} {'pages/s':>8} "
              f"{'max_in_flight':>14}")
        for index, (total, per_host) in enumerate(SETTINGS):
            cfg = CrawlConfig(seeds=bases, allowed_hosts=[urlsplit(b).netloc for b in bases], delay_seconds=0.0,
                              allow_private_addresses=True, max_concurrency=total, max_concurrency_per_host=per_host,
                              max_pages=10**6)
            started = time.perf_counter()
            stats = crawl(cfg, Path(tmp) / f"raw-{index}")
            seconds = time.perf_counter() - started
            print(f"{total:>16} {per_host:>9} {stats['pages_fetched']:>6} {seconds:>8.2f} "
                  f"{stats['pages_fetched'] / seconds:>8.1f} {stats['max_in_flight']:>14}")


if __name__ == "__main__":
    main()
