import signal
from collections import Counter

import pytest
from pydantic import ValidationError

from tasks.clean.extract import ExtractConfig, decode_html, extract_html, extract_page, extract_pages
from tasks.clean.langid import LanguageConfig, language_steps
from tasks.clean.normalize import default_pipeline
from tasks.clean.quality import QualityConfig, quality_steps
from tasks.clean.steps import CleanPipeline, Document, Dropped
from tests.tasks.clean.documents import document

FRENCH = ("<html><head><title>Café</title></head><body><p>Le café est délicieux et la crème brûlée aussi. "
          "Voilà une phrase naïve à l’été.</p><p>Les élèves étudient le français très sérieusement.</p></body></html>")


def test_decode_html_prefers_bom_then_header_then_meta() -> None:
    assert decode_html("é".encode("utf-8-sig"), "text/html; charset=iso-8859-1") == "é"
    assert decode_html("é".encode("cp1252"), "text/html; charset=windows-1252") == "é"
    meta = '<meta charset="windows-1252"><p>é</p>'.encode("cp1252")
    assert decode_html(meta, "text/html") == '<meta charset="windows-1252"><p>é</p>'
    assert decode_html("naïve".encode(), None) == "naïve"
    utf32 = "<p>Grüße</p>".encode("utf-32")  # its BOM starts with UTF-16LE's
    assert decode_html(utf32, None) == decode_html(utf32, "text/html; charset=utf-32") == "<p>Grüße</p>"
    # a <meta> saying UTF-16 on a page that is ASCII/UTF-8 means UTF-8, as in browsers
    page = '<meta charset="utf-16"><p>plain text</p> '.encode()
    assert decode_html(page, "text/html") == page.decode()


def test_decode_html_declared_latin1_keeps_mojibake_for_ftfy() -> None:
    # browsers read latin-1 labels as cp1252; extract_html repairs this
    assert decode_html("café".encode(), "text/html; charset=ISO-8859-1") == "cafÃ©"


def test_decode_html_skips_a_wrong_declared_charset_that_cannot_decode() -> None:
    body = FRENCH.encode("cp1252")  # declared utf-8, which these bytes are not
    assert decode_html(body, "text/html; charset=utf-8") == FRENCH


# English with em dashes, curly quotes and French loanwords: the characters whose UTF-8 bytes mojibake mangles
DINNER = [
    "Dinner at the café near the station — à la carte, of course — felt like a lesson in déjà vu.",
    "“Haven’t we been here before?” she asked, over a crème brûlée and two small cups of coffee.",
    "The maître d’ only smiled — “Voilà,” he said — and poured the wine without another word.",
    "It was the soufflé, I think, or perhaps the décor, that kept bringing us back every single year.",
    "We walked home along the river afterwards, talking about nothing much until the lights went out.",
]


def _page(paragraphs: list[str], charset: str) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f'<html><head><meta charset="{charset}"><title>Dinner — a review</title></head>'
            f"<body><article>{body}</article></body></html>").encode()


def _encoded_twice(text: str, codec: str) -> str:
    """text as it reads after its UTF-8 bytes were decoded with codec: served as UTF-8, it is UTF-8 twice."""
    return text.encode().decode(codec)


def _clean(body: bytes, content_type: str | None, quality: bool = True) -> Document | Dropped:
    """Extraction, then the corpus stage's cleaning up to the quality filters (PII and dedup aside)."""
    extracted, reason = extract_page(body, content_type, "http://h/", ExtractConfig())
    assert reason == ""
    steps = [*default_pipeline(20).steps, *language_steps(LanguageConfig())]
    steps += quality_steps(QualityConfig()) if quality else []
    return CleanPipeline(steps).process_explained(document(extracted.text, extracted.title))


# "latin-1": C1 controls in the text ('—' -> 'â\x80\x94'); "sloppy-windows-1252" (ftfy's codec): 'â€”'
@pytest.mark.parametrize("codec", ["latin-1", "sloppy-windows-1252"])
# the label in the HTTP header, in the <meta> alone, or replaced by the crawler's sniffed charset
@pytest.mark.parametrize("content_type", ["text/html; charset=iso-8859-1", "text/html", "text/html; charset=utf-8"])
def test_a_misdeclared_partly_double_encoded_page_cleans_as_if_served_right(codec: str, content_type: str) -> None:
    served_right = _clean(_page(DINNER, "utf-8"), "text/html; charset=utf-8")
    twice = [_encoded_twice(p, codec) if i % 2 else p for i, p in enumerate(DINNER)]
    cleaned = _clean(_page(twice, "iso-8859-1"), content_type)
    assert isinstance(cleaned, Document) and cleaned.language == "en"
    assert cleaned.text == served_right.text and cleaned.title == served_right.title == "Dinner — a review"
    assert not any(mark in cleaned.text for mark in ("â", "Ã", "Â", "\ufffd"))
    assert cleaned.text.count("—") == 4 and '"Haven\'t we been here before?"' in cleaned.text  # ftfy uncurls quotes
    assert "à la carte" in cleaned.text and "Voilà," in cleaned.text


def test_a_short_english_review_with_french_loanwords_and_mojibake_stays_english() -> None:
    # before extraction repaired it, its stray 'â's brought py3langid's English score under 0.65: dropped
    review = ["Dinner at the café — à la carte, of course — was a lesson in déjà vu.",
              "The maître d’ just smiled — “Voilà,” he said — and poured the wine.",
              "“Encore?” — “Oui.” — and so the crème brûlée came back, with the café au lait."]
    page = _page([_encoded_twice(p, "latin-1") for p in review], "iso-8859-1")
    cleaned = _clean(page, "text/html; charset=iso-8859-1", quality=False)  # too short for Gopher's quality rules
    assert isinstance(cleaned, Document), cleaned.reason
    assert cleaned.language == "en" and cleaned.language_score >= LanguageConfig().min_score
    assert "â" not in cleaned.text and cleaned.text.count("—") == 6


def test_extraction_leaves_text_without_mojibake_as_it_is() -> None:
    text = "“Quoted” — naïve café à la carte… 1½ °C, Grüße, SÃO PAULO, Москва, 東京"
    page = f"<html><body><article><p>{text}</p><p>x\u00a0y &amp; z</p></article></body></html>".encode()
    assert extract_html(page).text == f"{text}\nx y & z"


def test_extract_keeps_one_block_per_line_and_joins_hard_wraps() -> None:
    html = ("<html><head><title> My\n Page </title></head><body><nav><a href='/'>Home</a></nav><article>"
            "<h1>Heading<a class='headerlink' href='#h'>¶</a></h1>"
            "<p>First paragraph is\n   hard wrapped <!-- a comment --> in the source.</p>"
            "<p>Second paragraph.</p><pre>x = 1\ny = 2</pre></article></body></html>")
    extracted = extract_html(html, "http://h/page.html")
    assert extracted.title == "My Page"
    lines = extracted.text.split("\n")
    assert "Heading" in lines  # the Sphinx permalink mark is pruned
    assert "First paragraph is hard wrapped in the source." in lines
    assert "Second paragraph." in lines
    assert "¶" not in extracted.text


def test_extract_recovers_text_from_broken_html() -> None:
    html = "<html><head><title>Broken</title><body><div><p>Unclosed paragraph one<p>Paragraph two</div></span>"
    extracted = extract_html(html.encode())
    assert "Unclosed paragraph one" in extracted.text and "Paragraph two" in extracted.text


def test_extract_without_text_is_none() -> None:
    assert extract_html("<html><body><script>var x = 1;</script></body></html>") is None


def test_extract_pages_counts_failures_instead_of_raising() -> None:
    counts: Counter[str] = Counter()
    pages = [("http://h/empty", b"", None), ("http://h/blank", b"<html><body></body></html>", "text/html"),
             ("http://h/ok", b"<html><body><p>Some words here.</p></body></html>", "text/html")]
    results = list(extract_pages(pages, ExtractConfig(), counts))
    assert [url for url, _ in results] == ["http://h/ok"]
    assert counts == {"extract_failed": 1, "extract_empty": 1}


def test_extract_pages_in_worker_processes_keeps_order() -> None:
    pages = [(f"http://h/{i}", f"<html><body><p>Page number {i} text.</p></body></html>".encode(), None)
             for i in range(6)]
    counts: Counter[str] = Counter()
    results = list(extract_pages(pages, ExtractConfig(workers=2), counts))
    assert [url for url, _ in results] == [url for url, _, _ in pages]
    assert results[3][1].text == "Page number 3 text."


def _slow_page(blocks: int = 20_000) -> bytes:
    # ~1.7 MB of nested blocks: trafilatura needs seconds on it (3.6 s measured on the 2-core machine)
    body = "".join(f"<div><p>Paragraph {i} says a few words about nothing at all.</p><span>x</span></div>"
                   for i in range(blocks))
    return f"<html><body>{body}</body></html>".encode()


def test_extraction_stops_at_the_time_limit_and_restores_the_alarm_handler() -> None:
    def previous(signum, frame) -> None:
        raise AssertionError("the previous SIGALRM handler must not run")

    old = signal.signal(signal.SIGALRM, previous)
    try:
        extracted, reason = extract_page(_slow_page(), "text/html", "http://h/slow", ExtractConfig(timeout_seconds=0.05))
        assert (extracted, reason) == (None, "extract_timeout")
        assert signal.getsignal(signal.SIGALRM) is previous
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, old)


def test_extract_page_reasons() -> None:
    cfg = ExtractConfig()
    page = b"<html><body><p>Some text here.</p></body></html>"
    extracted, reason = extract_page(page, "text/html", "http://h/", cfg)
    assert extracted.text == "Some text here." and reason == ""
    assert extract_page(b"<html><body></body></html>", None, "http://h/e", cfg) == (None, "extract_empty")
    assert extract_page(b"", None, "http://h/f", cfg) == (None, "extract_failed")


def test_malformed_prune_xpaths_are_refused_up_front() -> None:
    with pytest.raises(ValidationError, match="invalid XPath expressions") as info:
        ExtractConfig(prune_xpaths=["//div[@class='nav'", "//nav"])
    assert "//div[@class=" in str(info.value) and "Invalid predicate" in str(info.value)
