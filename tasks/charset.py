"""What a response body really is: binary, or text in which charset (WHATWG sniffing plus detection)."""

from __future__ import annotations

import codecs
import re

import charset_normalizer

SNIFF_BYTES = 1445  # WHATWG MIME Sniffing 5.2: the resource header is at most 1445 bytes
# WHATWG MIME Sniffing 3: "binary data bytes" never occur in text (TAB, LF, FF, CR, ESC do)
_BINARY_DATA_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _codec(label: str | bytes) -> str | None:
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    try:
        return codecs.lookup(label.strip("\"' ")).name
    except LookupError:
        return None


def declared_charsets(body: bytes, content_type: str | None) -> list[str]:
    """Known codecs the page declares: the HTTP charset parameter, then a <meta> charset."""
    labels: list[str | bytes] = []
    if content_type and "charset=" in content_type.lower():
        labels.append(content_type.lower().split("charset=", 1)[1].split(";")[0])
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        labels.append(meta.group(1))
    return list(dict.fromkeys(c for c in map(_codec, labels) if c))


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def sniff_charset(body: bytes, content_type: str | None) -> tuple[str, str | None]:
    """('text', codec) for a body that is text, ('binary' | 'undecodable', None) otherwise.

    Order: a BOM; a declared UTF-16/32; binary data bytes in the first 1445 bytes mean binary;
    valid UTF-8 is UTF-8 whatever the label says (UTF-8 served as latin-1 is the common mislabel,
    and non-ASCII text in another charset is almost never valid UTF-8); then the first declared
    charset that decodes the bytes; then charset_normalizer's detection.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return "text", codec
    declared = declared_charsets(body, content_type)
    wide = [c for c in declared if c.startswith(("utf-16", "utf-32")) and _decodes(body, c)]
    if wide:
        return "text", wide[0]
    if _BINARY_DATA_BYTES.search(body[:SNIFF_BYTES]):
        return "binary", None
    if body.isascii():
        return "text", declared[0] if declared else "utf-8"
    if _decodes(body, "utf-8"):
        return "text", "utf-8"
    for codec in declared:
        if _decodes(body, codec):
            return "text", codec
    best = charset_normalizer.from_bytes(body).best()
    if best is None:
        return "undecodable", None
    return "text", _codec(best.encoding) or best.encoding
