"""The Chinese sample corpus: man pages rendered by man(1) into Google BERT's text format."""

import gzip
import shutil

import pytest

from tasks.corpus.local_files import read_bert_txt
from tasks.corpus.zh_manpages import page_sentences, write_corpus

PAGE = """.TH GREET 1 "2026" "manpages-zh" "用户命令"
.SH 名称
greet \\- 打招呼
.SH 描述
.B greet
向用户问好。然后退出！它不读取任何文件；也不写入。
.PP
选项“\\-n”（名字）可以重复。
"""


def test_page_sentences_drop_the_running_header_and_footer_and_split_after_terminators():
    rendered = "GREET(1)   用户命令   GREET(1)\n\n名称\n       greet - 打招呼\n\n描述\n       向用户问好。然后退出！\n\n" \
               "manpages-zh   2026   GREET(1)\n"
    assert page_sentences(rendered) == ["名称", "greet - 打招呼", "描述", "向用户问好。", "然后退出！"]


@pytest.mark.skipif(not shutil.which("man"), reason="needs man(1) (Debian's man-db)")
def test_pages_become_one_bert_document_each_in_one_file_per_section(tmp_path):
    man_dir = tmp_path / "zh_CN"
    for section, name in (("man1", "greet.1.gz"), ("man1", "wave.1.gz"), ("man5", "greet.conf.5.gz")):
        (man_dir / section).mkdir(parents=True, exist_ok=True)
        (man_dir / section / name).write_bytes(gzip.compress(PAGE.encode()))
    written = write_corpus(man_dir, tmp_path / "out")
    assert written == {"man1": 2, "man5": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["man1.txt", "man5.txt"]  # no partial file left
    documents = list(read_bert_txt(tmp_path / "out" / "man1.txt"))
    assert len(documents) == 2
    lines = documents[0].text.split("\n")
    assert lines[:2] == ["名称", "greet - 打招呼"]
    assert "greet 向用户问好。" in lines and "它不读取任何文件；" in lines and "选项“-n”（名字）可以重复。" in lines
