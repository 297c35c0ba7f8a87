from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.clean.langid import LanguageConfig, LanguageFilter, LanguageId, identify_language, language_steps
from tasks.clean.steps import CleanPipeline, Document

NOW = datetime(2024, 1, 1, tzinfo=UTC)
ENGLISH = ("This module provides access to some variables used or maintained by the interpreter "
           "and to functions that interact strongly with the interpreter.")
GERMAN = ("Dieses Modul bietet Zugriff auf einige Variablen, die vom Interpreter verwendet werden, "
          "und auf Funktionen, die stark mit dem Interpreter interagieren.")
CHINESE = "该模块提供对解释器使用或维护的一些变量的访问，以及与解释器强烈交互的函数的访问。"
JAPANESE = ("このモジュールは、インタープリタが使用または管理する変数や、"
            "インタープリタと強く相互作用する関数へのアクセスを提供します。")
CANTONESE = "佢哋係唔係去咗街市買嘢食呀？"  # py3langid: yue 0.99996
WU = "侬好，阿拉是上海人，今朝天气老好个。"  # py3langid: wuu 0.90


def _doc(text: str) -> Document:
    return Document(url="http://h/", source="crawl", title=None, text=text, fetched_at=NOW)


@pytest.mark.parametrize(("text", "language"), [(ENGLISH, "en"), (GERMAN, "de"), (CHINESE, "zh"), (JAPANESE, "ja")])
def test_identifies_each_language_confidently(text: str, language: str) -> None:
    found, score = identify_language(text)
    assert found == language
    assert score >= LanguageConfig().min_score


def test_a_page_is_judged_by_its_whole_main_text_not_its_opening_or_title() -> None:
    menu = "À la carte : café crème, croque-monsieur, pâté de campagne, crème brûlée, soufflé au fromage."
    review = ("The small restaurant on the corner has changed hands three times in ten years, but the kitchen has "
              "never closed for more than a week. Regulars say the new owners kept the recipes and the staff.")
    assert identify_language(menu)[0] == "fr"
    doc = LanguageId().apply(Document(url="http://h/", source="crawl", title="Café de la Paix",
                                      text=f"{menu}\n{review}", fetched_at=NOW))
    assert doc.language == "en" and doc.language_score >= LanguageConfig().min_score


def test_pipeline_records_language_and_keeps_only_english() -> None:
    pipeline = CleanPipeline(language_steps(LanguageConfig()))
    kept = list(pipeline.run([_doc(ENGLISH), _doc(GERMAN), _doc(CHINESE), _doc(JAPANESE)]))
    assert [d.text for d in kept] == [ENGLISH]
    assert kept[0].language == "en" and 0.65 <= kept[0].language_score <= 1.0
    assert pipeline.counts == {"language": 0, "wrong_language": 3}


def test_several_languages_can_be_kept() -> None:
    pipeline = CleanPipeline(language_steps(LanguageConfig(languages=["de", "en", "ja"])))
    kept = list(pipeline.run([_doc(ENGLISH), _doc(GERMAN), _doc(CHINESE), _doc(JAPANESE)]))
    assert [d.language for d in kept] == ["en", "de", "ja"]
    assert pipeline.counts["wrong_language"] == 1


def test_low_score_is_its_own_reason() -> None:
    doc = LanguageId().apply(_doc("The quick brown fox jumps over the lazy dog."))
    assert doc.language == "en" and doc.language_score < 0.999
    assert LanguageFilter(["en"], min_score=0.999, min_score_chars=1).filter(doc) == (False, "low_language_score")
    assert LanguageFilter(["en"], min_score=0.5, min_score_chars=1).filter(doc) == (True, "")


def test_filter_without_identification_is_an_error() -> None:
    with pytest.raises(ValueError, match="run LanguageId before LanguageFilter"):
        LanguageFilter(["en"], 0.65, 150).filter(_doc(ENGLISH))


@pytest.mark.parametrize(("text", "variety"), [(CANTONESE, "yue"), (WU, "wuu")])
def test_chinese_varieties_are_kept_as_zh(text: str, variety: str) -> None:
    assert identify_language(text)[0] == variety
    pipeline = CleanPipeline(language_steps(LanguageConfig(languages=["zh"])))
    kept = list(pipeline.run([_doc(text), _doc(CHINESE), _doc(JAPANESE)]))
    assert [(d.text, d.language) for d in kept] == [(text, "zh"), (CHINESE, "zh")]
    # the score is the three labels' summed probability, so at least the variety's own
    assert kept[0].language_score >= identify_language(text)[1]


@pytest.mark.parametrize("text", [CANTONESE, WU])
def test_varieties_apart_are_not_zh(text: str) -> None:
    pipeline = CleanPipeline(language_steps(LanguageConfig(languages=["zh"], varieties={})))
    assert list(pipeline.run([_doc(text)])) == []
    assert pipeline.counts["wrong_language"] == 1


def test_a_variety_can_be_kept_on_its_own() -> None:
    pipeline = CleanPipeline(language_steps(LanguageConfig(languages=["yue"], varieties={})))
    kept = list(pipeline.run([_doc(CANTONESE), _doc(WU), _doc(CHINESE)]))
    assert [(d.text, d.language) for d in kept] == [(CANTONESE, "yue")]


def test_merging_a_short_passage_split_between_labels_lifts_its_score() -> None:
    # '页脚' (footer): top label wuu at 0.16, the three Chinese labels together 0.42
    language, score = identify_language("页脚")
    merged_language, merged_score = identify_language("页脚", {"zh": ["wuu", "yue"]})
    assert (language, merged_language) == ("wuu", "zh") and merged_score > 2 * score


def test_threshold_scales_with_the_square_root_of_length_below_min_score_chars() -> None:
    language_filter = LanguageFilter(["en"], min_score=0.64, min_score_chars=100)
    assert language_filter.threshold(100) == language_filter.threshold(5000) == 0.64
    assert language_filter.threshold(25) == pytest.approx(0.32)
    assert LanguageFilter(["en"], 0.64, min_score_chars=1).threshold(1) == 0.64  # 1: no allowance


@pytest.mark.parametrize(("text", "language"), [
    ("注释......", "zh"),  # a zh_CN man page heading, 8 characters: zh 0.59 with wuu and yue
    ("Not available on Windows.", "en"),  # a Python docs paragraph, 25 characters: en 0.51
])
def test_short_text_is_kept_that_a_flat_threshold_drops(text: str, language: str) -> None:
    doc = LanguageId({"zh": ["wuu", "yue"]}).apply(_doc(text))
    assert doc.language == language and doc.language_score < 0.65
    assert LanguageFilter([language], 0.65, min_score_chars=1).filter(doc) == (False, "low_language_score")
    assert LanguageFilter([language], 0.65, min_score_chars=150).filter(doc) == (True, "")


def test_short_text_of_another_language_is_still_dropped() -> None:
    pipeline = CleanPipeline(language_steps(LanguageConfig(languages=["zh"])))
    # a Japanese man page's synopsis (書式), 23 characters: read as zh 0.18, below the 0.26 its length needs;
    # a short Japanese sentence and a short English one: not zh at all
    short = ["書式 write user [ttyname]", "準備が完了しました。", "Not available on Windows."]
    assert list(pipeline.run(_doc(text) for text in short)) == []
    assert pipeline.counts == {"language": 0, "low_language_score": 1, "wrong_language": 2}


def test_disabled_means_no_steps() -> None:
    assert language_steps(LanguageConfig(enabled=False)) == []


def test_config_rejects_unknown_codes_and_bad_scores() -> None:
    with pytest.raises(ValidationError) as error:
        LanguageConfig(languages=["en", "english"], min_score=1.5, min_score_chars=0,
                       varieties={"zh": ["wuu", "yue", "cantonese"], "yue": ["wuu"]})
    message = str(error.value)
    assert "'english'" in message and "valid:" in message and "min_score" in message
    assert "min_score_chars" in message and "varieties" in message and "'cantonese'" in message
    assert "['wuu'] are listed more than once" in message and "['yue'] are both a language and a variety" in message
    with pytest.raises(ValidationError):
        LanguageConfig(languages=[])


def test_config_rejects_keeping_a_variety_it_counts_as_another_language() -> None:
    with pytest.raises(ValidationError, match=r"yue \(counted as zh\)"):
        LanguageConfig(languages=["zh", "yue"])
    assert LanguageConfig(languages=["zh", "yue"], varieties={}).languages == ["zh", "yue"]


def test_the_language_list_configs_are_checked_against_is_the_models():
    from tasks.clean.langid import KNOWN_LANGUAGES, known_languages

    assert KNOWN_LANGUAGES == set(known_languages())
