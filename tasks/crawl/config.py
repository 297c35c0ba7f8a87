"""The crawl's config (the crawl section of tasks/corpus/config.py's CorpusConfig): seeds, scope, politeness, limits.

Every field is validated before a crawl starts.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tasks.crawl.frontier import normalize_url


def _fetchable(url: str) -> bool:
    """An absolute http(s) URL whose host can be looked up (IDNA-encodable: no 'a..b.com', no emoji)."""
    if normalize_url(url) is None:
        return False
    import httpx  # ~0.1 CPU-s: paid by a config that names URLs, not by every config

    try:
        httpx.URL(url)
        urlsplit(url).hostname.encode("idna")
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return False
    return True


def _http_urls(field: str, urls: list[str]) -> list[str]:
    bad = [u for u in urls if not _fetchable(u)]
    if bad:
        raise ValueError(f"{field} must be absolute http(s) URLs with a valid host name, got {bad}")
    return urls


class CrawlConfig(BaseModel):
    """What to crawl and how politely."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    seeds: list[str] = Field(default=[])
    """Start URLs (http or https)."""
    local_site: Path | None = None
    """A folder served on 127.0.0.1 during the crawl; its root page is a seed (e.g. the Python docs)."""
    allowed_hosts: list[str] = Field(default=[])
    """Hosts ('example.org' or 'example.org:8080') the crawl may visit; empty = the seeds' hosts."""
    include_patterns: list[str] = Field(default=[])
    """Regexes; if any are given, a URL must match one of them (re.search) to be crawled."""
    exclude_patterns: list[str] = Field(default=[])
    """Regexes; a URL matching any of them is not crawled."""
    max_pages: int = Field(default=1000, ge=1)
    """Stop after this many HTML pages have been kept."""
    max_depth: int = Field(default=10, ge=0)
    """Links followed from a seed at most this many times (seeds are depth 0)."""
    delay_seconds: float = Field(default=1.0, ge=0.0)
    """Minimum seconds between two requests to the same host (robots.txt Crawl-delay wins if larger)."""
    max_crawl_delay_seconds: float = Field(default=300.0, ge=0.0)
    """A robots.txt Crawl-delay is obeyed up to this many seconds, a longer one is capped here, and the
    crawl says so (Heritrix's respectCrawlDelayUpToSeconds, also 300 s): a host asking for a day per
    request would otherwise hold back every other host at each depth of the breadth-first crawl."""
    user_agent: str = Field(default="pretrainflow-crawler/0.1", min_length=1)
    """User-Agent header; its product token (before '/') is matched against robots.txt groups."""
    timeout_seconds: float = Field(default=30.0, gt=0.0)
    """Connect, read and write timeout of every request, in seconds."""
    request_deadline_seconds: float = Field(default=60.0, gt=0.0)
    """Total seconds one response may take (headers and body); a page that drips bytes is cut off."""
    max_retries: int = Field(default=2, ge=0)
    """Retries of a request after a 408/429/5xx answer, a timeout or a network error (Scrapy's RETRY_TIMES)."""
    backoff_seconds: float = Field(default=1.0, ge=0.0)
    """Wait before the first retry; it doubles with each retry (a Retry-After header can ask for more)."""
    max_backoff_seconds: float = Field(default=60.0, ge=0.0)
    """Longest single wait before a retry; a Retry-After asking for longer gives the page up."""
    max_redirects: int = Field(default=20, ge=0)
    """Redirects followed from one link (WHATWG Fetch stops at 20); loops are cut at once."""
    max_seconds: float | None = Field(default=None, gt=0.0)
    """Time budget of the whole crawl in seconds; None = no limit. Waits and requests are cut at it."""
    max_bytes: int = Field(default=5_000_000, gt=0)
    """Largest response body kept, in bytes after decompression; larger pages are skipped."""
    obey_robots: bool = True
    """Fetch robots.txt once per host and skip disallowed URLs."""
    allow_private_addresses: bool = False
    """Allow connections to private, loopback and link-local addresses (never needed for local_site)."""
    raw_batch_pages: int = Field(default=50, ge=1)
    """Fetches per raw-store batch file; a killed crawl refetches at most this many."""
    max_concurrency: int = Field(default=16, ge=1)
    """Requests in flight at once over all hosts (Scrapy's CONCURRENT_REQUESTS), robots.txt included."""
    max_concurrency_per_host: int = Field(default=1, ge=1)
    """URLs of one host worked on at once; their request starts stay delay_seconds apart."""
    sitemaps: list[str] = Field(default=[])
    """Sitemap URLs (XML, sitemap index, .xml.gz or text); the pages they list are crawled at depth 0."""
    use_robots_sitemaps: bool = False
    """Also read the sitemaps named by `Sitemap:` lines in the robots.txt of the seeds' hosts."""
    max_sitemap_depth: int = Field(default=2, ge=0)
    """Sitemap indexes followed at most this many levels deep (0: an index's sitemaps are not read)."""

    @field_validator("seeds")
    @classmethod
    def _seed_urls(cls, seeds: list[str]) -> list[str]:
        return _http_urls("seeds", seeds)

    @field_validator("sitemaps")
    @classmethod
    def _sitemap_urls(cls, sitemaps: list[str]) -> list[str]:
        return _http_urls("sitemaps", sitemaps)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        bad = [h for h in hosts if not h or any(c in h for c in "/ ") or normalize_url(f"http://{h}/") is None]
        if bad:
            raise ValueError(f"allowed_hosts are host names with an optional port ('example.org', "
                             f"'example.org:8080'), not URLs; got {bad}")
        return hosts

    @field_validator("user_agent")
    @classmethod
    def _header_value(cls, agent: str) -> str:
        # h11 refuses a header value with surrounding whitespace or controls, and one that is not
        # ASCII cannot be sent: every request would fail, robots.txt first (then nothing is crawled)
        if not (agent.isascii() and agent.isprintable() and agent == agent.strip()):
            raise ValueError(f"user_agent must be printable ASCII without leading or trailing spaces, got {agent!r}")
        return agent

    @field_validator("include_patterns", "exclude_patterns")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        problems = []
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(f"{pattern!r} ({exc})")
        if problems:
            raise ValueError(f"invalid regular expressions: {'; '.join(problems)}")
        return patterns

    @field_validator("local_site")
    @classmethod
    def _site_folder(cls, site: Path | None) -> Path | None:
        if site is None:
            return None
        if not (site / "index.html").is_file():
            # imported for this message only: local_site.py loads http.server and ssl (~0.02 CPU-s)
            from tasks.crawl.local_site import PYTHON_DOCS, PYTHON_DOCS_HINT

            raise ValueError(
                f"local_site {str(site)!r} must be an existing folder with an index.html "
                f"(for the Python docs at {PYTHON_DOCS}: {PYTHON_DOCS_HINT})"
            )
        return site
