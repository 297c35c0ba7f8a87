"""Refresh crawls: ask again for what a previous snapshot kept, conditionally, and say what changed.

Every page the previous crawl kept is requested with If-None-Match (its ETag) and
If-Modified-Since (its Last-Modified). A 304 answer reuses the previous record, body, headers and
original fetched_at, copied into the new raw store so the new snapshot stands alone.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from tasks.crawl.warc import FetchRecord, WarcRawStore, payload_digest

# each is a statistic of a refresh crawl (0 in a crawl without a previous snapshot)
REFRESH_COUNTS = (
    "pages_not_modified",  # answered 304: the previous record was reused
    "pages_unchanged",  # answered 200 with the same body as before
    "pages_changed",  # answered 200 with another body
    "pages_new",  # kept now, not kept by the previous crawl
    "pages_gone",  # kept by the previous crawl, now 404 or 410
)
GONE_STATUSES = frozenset({404, 410})


class PreviousCrawl:
    """A previous crawl's raw store, read only: its kept pages, their validators and bodies."""

    def __init__(self, raw_dir: Path) -> None:
        raw_dir = Path(raw_dir)
        if not raw_dir.is_dir():
            raise FileNotFoundError(
                f"previous_raw_dir {str(raw_dir)!r} is not a folder (a previous crawl's raw store of WARC files)")
        self.store = WarcRawStore(raw_dir, batch_size=1)  # never written to: nothing is added
        self.pages = {r.url: r for r in self.store.fetches() if r.outcome == "ok"}  # without bodies

    def conditional_headers(self, url: str) -> dict[str, str] | None:
        """If-None-Match / If-Modified-Since from the previous response to url; None if it has neither."""
        page = self.pages.get(url)
        if page is None:
            return None
        validators = {k.lower(): v for k, v in page.headers}
        headers = {}
        if "etag" in validators:
            headers["If-None-Match"] = validators["etag"]
        if "last-modified" in validators:
            headers["If-Modified-Since"] = validators["last-modified"]
        return headers or None

    def revalidated(self, url: str, depth: int, checked_at: datetime) -> FetchRecord | None:
        """The previous record of url, body included, as kept again after a 304 at checked_at."""
        page = self.store.load(url)
        if page is None or page.outcome != "ok":
            return None
        return replace(page, depth=depth, revalidated_at=checked_at)

    def change(self, record: FetchRecord) -> str | None:
        """Which REFRESH_COUNTS statistic a page of this crawl adds to, if any."""
        before = self.pages.get(record.url)
        if record.outcome == "ok":
            if before is None:
                return "pages_new"
            if record.revalidated_at is not None:
                return "pages_not_modified"
            digest = payload_digest(record.body) if record.body is not None else record.digest
            return "pages_unchanged" if digest == before.digest else "pages_changed"
        if record.outcome == "http_error" and record.status in GONE_STATUSES and before is not None:
            return "pages_gone"
        return None
