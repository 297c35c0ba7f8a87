"""A Chinese sample corpus the machine can obtain offline: Debian's manpages-zh, in Google BERT's text format.

The package holds ~700 manual pages translated into Simplified Chinese by people (zh_CN), in troff. Each
page is rendered with man(1), and written as one document of Google BERT's create_pretraining_data input:
one sentence per line, a blank line between documents. Pages go to one file per manual section
(man1.txt: user commands, man3.txt: library calls, ...), so a document's url names its section and the
evaluate stage can classify pages by section (configs/zh-tiny.yaml does).

    python -m tasks.corpus.zh_manpages data/samples/manpages-zh   # apt-get download, no root needed
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.debian import download_packages

PACKAGE = "manpages-zh"
_OVERSTRIKE = re.compile(".\x08")  # man's bold/underline: a character, a backspace, the character again
_SENTENCE_END = re.compile(r"(?<=[。！？；])(?![”」』）])")  # split after a terminator not followed by a closer
_SPACES = re.compile(r"\s+")
_MIN_SENTENCE_CHARS = 2
RENDER_TIMEOUT_S = 60  # one page renders in ~0.1 s


def download_pages(work_dir: Path) -> Path:
    """Download and unpack the package (apt-get download: no install, no root); -> the zh_CN man folder."""
    root, _ = download_packages((PACKAGE,), work_dir)
    return root / "usr/share/man/zh_CN"


def render_page(path: Path) -> str:
    """A troff page as plain text, one paragraph per line (man's width set wide so nothing wraps)."""
    env = {**os.environ, "MANWIDTH": "4000", "MANPAGER": "cat", "LC_ALL": "C.UTF-8"}
    with subprocess.Popen(["man", "-l", "-E", "UTF-8", str(path)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, start_new_session=True) as man:
        try:
            output, _ = man.communicate(timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # troff loops on some pages at some widths (df.1 at 97 columns)
            os.killpg(man.pid, signal.SIGKILL)  # man, nroff and troff alike
            man.communicate()
            print(f"skipped {path.name}: man took over {RENDER_TIMEOUT_S} s", file=sys.stderr)
            return ""
    return _OVERSTRIKE.sub("", output.decode("utf-8", errors="replace"))


def page_sentences(rendered: str) -> list[str]:
    """The page's sentences: header and footer lines dropped, paragraphs split after 。！？；."""
    lines = [line.strip() for line in rendered.splitlines() if line.strip()]
    sentences = []
    for line in lines[1:-1]:  # the first and last lines are man's running header and footer
        for sentence in _SENTENCE_END.split(_SPACES.sub(" ", line)):
            if len(sentence.strip()) >= _MIN_SENTENCE_CHARS:
                sentences.append(sentence.strip())
    return sentences


def section_pages(man_dir: Path) -> Iterator[tuple[str, list[Path]]]:
    """(section folder name, its pages sorted by name) for every manN folder."""
    for section in sorted(p for p in man_dir.iterdir() if p.is_dir() and p.name.startswith("man")):
        yield section.name, sorted(section.glob("*.gz"))


def write_corpus(man_dir: Path, out_dir: Path, max_pages: int | None = None) -> dict[str, int]:
    """Write OUT/manN.txt per section in Google BERT's format; -> documents written per section.

    Each file is written next to its final name and renamed, so an interrupted run leaves no half file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for section, pages in section_pages(man_dir):
            pages = pages[:max_pages] if max_pages else pages
            documents = [s for s in pool.map(lambda p: page_sentences(render_page(p)), pages) if s]
            if not documents:
                continue
            partial = out_dir / f".{section}.txt.partial"
            partial.write_text("\n\n".join("\n".join(doc) for doc in documents) + "\n", encoding="utf-8")
            partial.replace(out_dir / f"{section}.txt")
            written[section] = len(documents)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for man1.txt, man3.txt, ... (Google BERT format)")
    parser.add_argument("--max-pages", type=int, default=None, help="at most this many pages per section")
    args = parser.parse_args(argv)
    if not shutil.which("man") or not shutil.which("apt-get"):
        print("needs man (Debian's man-db) and apt-get", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as work:
        written = write_corpus(download_pages(Path(work)), args.out_dir, args.max_pages)
    total = sum(written.values())
    print(f"{total} pages in Google BERT format under {args.out_dir}: "
          + ", ".join(f"{name} {count}" for name, count in written.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
