import pytest

from tasks.clean.charset import sniff_charset
from tests.tasks.site_fixtures import FRENCH_TEXT


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [("<p>café</p>".encode(), "text/html; charset=iso-8859-1", ("text", "utf-8")),  # UTF-8 mislabelled
     ("<p>café</p>".encode("cp1252"), "text/html; charset=windows-1252", ("text", "cp1252")),
     (b'<meta charset="koi8-r"><p>' + "привет".encode("koi8-r"), "text/html", ("text", "koi8-r")),
     (b"<p>plain</p>", "text/html", ("text", "utf-8")),
     ("<p>wide</p>".encode("utf-16"), "text/html", ("text", "utf-16")),  # BOM
     ("<p>wide</p>".encode("utf-16-le"), "text/html; charset=utf-16le", ("text", "utf-16-le")),
     (b"<p>\x00\x01\x02 not text</p>", "text/html", ("binary", None)),
     (b'<meta charset="utf-16"><p>ascii</p> ', "text/html", ("text", "utf-8")),  # WHATWG: a meta UTF-16 is UTF-8
     ("<p>wide</p>".encode("utf-32"), "text/html", ("text", "utf-32")),  # its BOM starts with UTF-16LE's
     (b"<title>Report\x0b2023</title>" + b"<p>text</p>" * 50, "text/html", ("text", "utf-8")),  # one stray VT
     (b"Report\x0b2023 plain", "text/plain", ("binary", None)),  # outside HTML: WHATWG's rule as written
     (bytes(range(256)) * 6, "text/html", ("binary", None))],
)
def test_sniff_charset(body: bytes, content_type: str, expected: tuple[str, str | None]) -> None:
    assert sniff_charset(body, content_type) == expected


def test_sniff_charset_detects_what_a_wrong_label_cannot_decode() -> None:
    html = f"<html><body><p>{FRENCH_TEXT}</p><p>{FRENCH_TEXT}</p></body></html>"
    kind, codec = sniff_charset(html.encode("cp1252"), "text/html; charset=utf-8")
    assert kind == "text" and html.encode("cp1252").decode(codec) == html
