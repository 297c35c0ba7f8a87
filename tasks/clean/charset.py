"""What a response body really is: binary, or text in which charset (WHATWG sniffing plus detection)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

SNIFF_BYTES = 1445  # WHATWG MIME Sniffing 5.2: the resource header is at most 1445 bytes
# WHATWG MIME Sniffing 3: "binary data bytes" never occur in text (TAB, LF, FF, CR, ESC do)
_BINARY_DATA_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
# UTF-32 before UTF-16: the UTF-32LE mark starts with the UTF-16LE one
BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_NEAR_TIE = 0.05  # charset_normalizer chaos/coherence (0-1) within which windows-1252 is preferred
_HTML_BINARY_SHARE = 0.01  # binary data bytes in an HTML page's first 1445 bytes beyond this share: not a page


def _codec(label: str | bytes) -> str | None:
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    try:
        return codecs.lookup(label.strip("\"' ")).name
    except LookupError:
        return None


def declared_charsets(body: bytes, content_type: str | None) -> list[str]:
    """Known codecs the page declares: the HTTP charset parameter, then a <meta> charset.

    A <meta> that says UTF-16 or UTF-32 is read as UTF-8 (WHATWG HTML 13.2.3.2): the document could
    not have been parsed to find the tag if it were.
    """
    codecs_: list[str | None] = []
    if content_type and "charset=" in content_type.lower():
        codecs_.append(_codec(content_type.lower().split("charset=", 1)[1].split(";")[0]))
    meta = _META_CHARSET.search(body[:4096])
    if meta:
        codec = _codec(meta.group(1))
        codecs_.append("utf-8" if codec and codec.startswith(("utf-16", "utf-32")) else codec)
    return list(dict.fromkeys(c for c in codecs_ if c))


def _looks_binary(head: bytes, html: bool) -> bool:
    if not html:
        return _BINARY_DATA_BYTES.search(head) is not None
    return b"\x00" in head or len(_BINARY_DATA_BYTES.findall(head)) > _HTML_BINARY_SHARE * len(head)


def decode_text(body: bytes, declared: Sequence[str] = ()) -> str:
    """Text of a body, never an error: a BOM, then the first declared codec that decodes it, then
    UTF-8, then charset_normalizer's detection, then UTF-8 with replacement characters."""
    for bom, codec in BOMS:
        if body.startswith(bom):
            return body.decode(codec, errors="replace")
    for codec in dict.fromkeys([*declared, "utf-8"]):
        try:
            return body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    codec = detect_codec(body)
    return body.decode(codec or "utf-8", errors="replace")


def detect_codec(body: bytes) -> str | None:
    """charset_normalizer's guess, except that windows-1252 wins a near tie.

    On short Western text several single-byte codecs decode with almost no "chaos"; charset_normalizer
    then may pick cp1257 and turn French "très" into "trčs". windows-1252 is the web's legacy default
    (WHATWG), so when it scores within _NEAR_TIE of the best guess, it is the answer.
    """
    import charset_normalizer  # ~0.02 CPU-s: paid by a body without a usable charset, not by loading a config

    results = charset_normalizer.from_bytes(body)
    best = results.best()
    if best is None:
        return None
    western = next((m for m in results if m.encoding == "cp1252"), None)
    near = western is not None and western.chaos <= best.chaos + _NEAR_TIE
    if near and western.coherence >= best.coherence - _NEAR_TIE:
        best = western
    return _codec(best.encoding) or best.encoding


def _decodes(body: bytes, codec: str) -> bool:
    try:
        body.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def sniff_charset(body: bytes, content_type: str | None) -> tuple[str, str | None]:
    """('text', codec) for a body that is text, ('binary' | 'undecodable', None) otherwise.

    Order: a BOM; a UTF-16/32 declared by HTTP; binary data bytes in the first 1445 bytes mean binary
    (for HTML, only a NUL or more than 1% of them: a stray control character does not make a page a file);
    valid UTF-8 is UTF-8 whatever the label says (UTF-8 served as latin-1 is the common mislabel,
    and non-ASCII text in another charset is almost never valid UTF-8); then the first declared
    charset that decodes the bytes; then charset_normalizer's detection.
    """
    for bom, codec in BOMS:
        if body.startswith(bom):
            return "text", codec
    declared = declared_charsets(body, content_type)
    wide = [c for c in declared if c.startswith(("utf-16", "utf-32")) and _decodes(body, c)]
    if wide:
        return "text", wide[0]
    if _looks_binary(body[:SNIFF_BYTES], "html" in (content_type or "").lower()):
        return "binary", None
    if body.isascii():
        return "text", declared[0] if declared else "utf-8"
    if _decodes(body, "utf-8"):
        return "text", "utf-8"
    for codec in declared:
        if _decodes(body, codec):
            return "text", codec
    codec = detect_codec(body)
    return ("text", codec) if codec else ("undecodable", None)
