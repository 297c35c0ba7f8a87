"""tasks/clean/text_stats.py: words and lines as the filters count them."""

from tasks.clean.text_stats import words_of


def test_words_strip_punctuation() -> None:
    assert words_of("Hello, world! -- (see: re.compile) #tag ...") == ["Hello", "world", "see", "re.compile", "tag"]
    assert words_of("Python是一种语言。") == ["Python", "是", "一", "种", "语", "言"]  # a character of Chinese is a word
