from tasks.sentences import split_document, split_paragraph


def test_english_sentences_split_and_abbreviations_kept():
    assert split_paragraph("Dr. Smith went home. He slept well. Then it was 3.14 p.m.") == [
        "Dr. Smith went home.",
        "He slept well.",
        "Then it was 3.14 p.m.",
    ]


def test_paragraph_lines_split_separately_and_blank_lines_dropped():
    text = "First paragraph ends here\n\n   \nSecond paragraph. It has two sentences.\n"
    assert split_document(text) == ["First paragraph ends here", "Second paragraph.", "It has two sentences."]


def test_empty_and_whitespace_documents_have_no_sentences():
    assert split_document("") == []
    assert split_document(" \n\t\n ") == []


def test_cjk_terminators_split_sentences():
    assert split_document("这是第一句。这是第二句！第三句吗？最后") == ["这是第一句。", "这是第二句！", "第三句吗？", "最后"]


def test_cjk_closing_quote_and_terminator_runs_stay_with_their_sentence():
    assert split_document("他说：“你好。”然后走了。") == ["他说：“你好。”", "然后走了。"]
    assert split_document("好！！真的？") == ["好！！", "真的？"]
    assert split_document("（这是括号。）后面") == ["（这是括号。）", "后面"]


def test_mixed_cjk_and_latin_text():
    assert split_document("Python很好。Python也快。And English. 日本語です。") == [
        "Python很好。",
        "Python也快。",
        "And English.",
        "日本語です。",
    ]


def test_ascii_opening_quote_is_not_moved_to_previous_sentence():
    assert split_document('He said. "Hello there." Then left.') == ["He said.", '"Hello there."', "Then left."]


def test_buffered_blingfire_call_matches_the_library_wrapper():
    import blingfire

    from tasks.sentences import _blingfire_sentences

    texts = ["Dr. Smith went home. He slept.", "Café déjà vu! Naïve? Yes.", "你好。”然后", "x" * 40_000 + ". Then more.",
             "Short", "🙂 emoji. Ünïcödé. 日本語です。"]
    for text in texts:
        assert _blingfire_sentences(text) == blingfire.text_to_sentences(text)


def test_one_call_per_document_gives_each_lines_sentences():
    lines = [
        "Heading without a stop",
        "Dr. Smith arrived at 5 p.m. yesterday. He left early!",
        "你好。”然后他走了。好！！",
        "e.g.",
        "Mixed text 中文。More English here?",
    ]
    per_line = [sentence for line in lines for sentence in split_paragraph(line)]
    assert split_document("\n".join(lines)) == per_line
    assert split_document("\n\n".join(lines) + "\n") == per_line


def test_a_document_holding_the_paragraph_separator_is_split_line_by_line():
    text = "First part\u2029second part. Next one.\nLast line"
    expected = split_paragraph("First part\u2029second part. Next one.") + split_paragraph("Last line")
    assert split_document(text) == expected
