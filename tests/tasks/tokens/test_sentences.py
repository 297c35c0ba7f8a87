from tasks.tokens.sentences import split_document, split_paragraph


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

    from tasks.tokens.sentences import _blingfire_sentences

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
        "यह पहला वाक्य है। यह दूसरा है। 你好!再见.",
    ]
    per_line = [sentence for line in lines for sentence in split_document(line)]
    assert split_document("\n".join(lines)) == per_line
    assert split_document("\n\n".join(lines) + "\n") == per_line


def test_the_lines_of_google_bert_format_stay_sentence_boundaries():
    # local_text_format 'bert': a document's lines are its sentences; a line is never joined to the next, a
    # line that is one sentence stays whole, and a line holding several is split into them
    lines = ["Dr. Smith arrived at 5 p.m. yesterday.", "He left early", "e.g.", "see the docs. ::",
             "他说：“你好。”", "第一句。第二句！"]
    assert split_document("\n".join(lines)) == [*lines[:5], "第一句。", "第二句！"]


def test_a_document_holding_the_paragraph_separator_is_split_line_by_line():
    text = "First part\u2029second part. Next one.\nLast line"
    expected = split_document("First part\u2029second part. Next one.") + split_document("Last line")
    assert split_document(text) == expected


def test_danda_and_other_terminators_blingfire_ignores_split_sentences():
    assert split_document("यह पहला वाक्य है। यह दूसरा वाक्य है॥ तीसरा") == ["यह पहला वाक्य है।", "यह दूसरा वाक्य है॥", "तीसरा"]
    assert split_document("এটি প্রথম বাক্য। এটি দ্বিতীয় বাক্য।") == ["এটি প্রথম বাক্য।", "এটি দ্বিতীয় বাক্য।"]
    assert split_document("これはペンです．あれは本です．") == ["これはペンです．", "あれは本です．"]
    assert split_document("ይህ የመጀመሪያ ነው። ይህ ሁለተኛ ነው።") == ["ይህ የመጀመሪያ ነው።", "ይህ ሁለተኛ ነው።"]
    assert split_document("ဒါက ပထမ ဖြစ်တယ်။ ဒါက ဒုတိယ ဖြစ်တယ်။") == ["ဒါက ပထမ ဖြစ်တယ်။", "ဒါက ဒုတိယ ဖြစ်တယ်။"]
    assert split_document("یہ پہلا جملہ ہے۔ یہ دوسرا جملہ ہے۔") == ["یہ پہلا جملہ ہے۔", "یہ دوسرا جملہ ہے۔"]


def test_closing_quotes_stay_with_the_new_terminators():
    assert split_document("उसने कहा “नमस्ते।” फिर गया।") == ["उसने कहा “नमस्ते।”", "फिर गया।"]
    assert split_document("「ペンです．」本です．") == ["「ペンです．」", "本です．"]


def test_ascii_terminator_straight_before_cjk_ends_a_sentence():
    assert split_document("你好!今天天气很好?是的.") == ["你好!", "今天天气很好?", "是的."]
    assert split_document("Python很好.日本語です.") == ["Python很好.", "日本語です."]
    assert split_document("他说：“你好!”然后走了.") == ["他说：“你好!”", "然后走了."]


def test_numbers_list_markers_and_ellipses_are_not_sentence_ends():
    assert split_document("价格是３．１４元．好的．") == ["价格是３．１４元．", "好的．"]
    assert split_document("1.安装软件 2.运行程序") == ["1.安装软件 2.运行程序"]
    assert split_document("等等...然后呢") == ["等等...然后呢"]
    assert split_document("He scored 3.14 pts. vs. 2 pts. in Jan. 2020, e.g. at home.") == [
        "He scored 3.14 pts. vs. 2 pts. in Jan. 2020, e.g. at home."
    ]
    assert split_document("See e.g. Node.js. Then 3.14 and “curly” quotes.") == [
        "See e.g. Node.js.", "Then 3.14 and “curly” quotes."
    ]


def test_split_paragraph_splits_as_split_document_does_for_the_c4_sentence_count():
    assert split_paragraph("यह पहला वाक्य है। यह दूसरा वाक्य है।") == ["यह पहला वाक्य है।", "यह दूसरा वाक्य है।"]
    assert split_paragraph("你好!今天天气很好?是的。") == ["你好!", "今天天气很好?", "是的。"]
