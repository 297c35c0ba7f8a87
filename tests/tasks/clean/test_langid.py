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
    assert LanguageFilter(["en"], min_score=0.999).filter(doc) == (False, "low_language_score")
    assert LanguageFilter(["en"], min_score=0.5).filter(doc) == (True, "")


def test_filter_without_identification_is_an_error() -> None:
    with pytest.raises(ValueError, match="run LanguageId before LanguageFilter"):
        LanguageFilter(["en"], 0.65).filter(_doc(ENGLISH))


def test_disabled_means_no_steps() -> None:
    assert language_steps(LanguageConfig(enabled=False)) == []


def test_config_rejects_unknown_codes_and_bad_scores() -> None:
    with pytest.raises(ValidationError) as error:
        LanguageConfig(languages=["en", "english"], min_score=1.5)
    message = str(error.value)
    assert "'english'" in message and "valid:" in message and "min_score" in message
    with pytest.raises(ValidationError):
        LanguageConfig(languages=[])


def test_the_language_list_configs_are_checked_against_is_the_models():
    from tasks.clean.langid import KNOWN_LANGUAGES, known_languages

    assert KNOWN_LANGUAGES == set(known_languages())
