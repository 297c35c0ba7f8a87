"""tasks/clean/text_stats.py: words and lines as the filters count them."""

from tasks.clean.text_stats import count_words, split_words, words_of


def test_words_strip_punctuation() -> None:
    assert words_of("Hello, world! -- (see: re.compile) #tag ...") == ["Hello", "world", "see", "re.compile", "tag"]
    assert words_of("Python是一种语言。") == ["Python", "是", "一", "种", "语", "言"]  # a character of Chinese is a word


def test_count_words_counts_as_split_words_does() -> None:
    texts = ["", " \n\t ", "Hello, world!\nSecond line.", "café déjà vu", "Python是一种语言。 And more",
             "我们今天去公园散步", "ภาษาไทย ง่าย", "日本語の文章です", "a\u3000b\u00a0c", "x中y 中文z\u2029end"]
    for text in texts:
        assert count_words(text) == len(split_words(text)), text
    assert count_words("我们今天去公园散步") == 9  # a Chinese character is a word
    assert count_words("Python是一种语言。") == len(split_words("Python是一种语言。")) == 7  # Python, 5 characters, 。
