"""Exact deduplication: documents whose text is equal up to case and whitespace keep only the first."""

from __future__ import annotations

import hashlib

from tasks.clean.steps import Document, Filter


def dedup_key(text: str) -> str:
    """sha256 hex of the text lowercased with every whitespace run collapsed to one space."""
    return hashlib.sha256(" ".join(text.lower().split()).encode("utf-8")).hexdigest()


def content_hash(text: str) -> str:
    """sha256 hex of the exact text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ExactDedup(Filter):
    """Drop a document whose dedup_key was already seen (order decides which copy is kept)."""

    name = "duplicate"

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        key = dedup_key(doc.text)
        if key in self.seen:
            return False, "duplicate"
        self.seen.add(key)
        return True, ""
