"""tasks/clean/quality.py: the filter families together, with their switches and config errors."""

import pytest
from pydantic import ValidationError

from tasks.clean.normalize import MinWords
from tasks.clean.quality import QUALITY_DROP_REASONS, QualityConfig, quality_steps
from tasks.clean.steps import CleanPipeline
from tests.tasks.clean.documents import GOOD, document


def test_prose_passes_every_filter_unchanged() -> None:
    pipeline = CleanPipeline(quality_steps(QualityConfig()))
    assert [d.text for d in pipeline.run([document(GOOD, title="Caching")])] == [GOOD]
    assert not any(count for count in pipeline.counts.values())


# Chinese and Japanese prose, no spaces between words: 178 and 151 characters, three lines each
CHINESE = ("北京是中华人民共和国的首都，也是全国的政治、文化和国际交往中心。这座城市有三千多年的建城史，拥有众多的历史遗迹和博物馆。\n"
           "每年都有大量的游客来到这里参观故宫、长城和颐和园。上海是中国最大的经济中心城市，位于长江入海口，是重要的国际港口。\n"
           "广州是华南地区的中心城市，自古以来就是重要的对外贸易港口，饮食文化非常丰富。杭州以西湖闻名，风景优美，被誉为人间天堂。")
JAPANESE = ("東京は日本の首都であり、政治と経済の中心地です。多くの人々が毎日電車で通勤しています。\n"
            "京都には古い寺院や神社がたくさんあり、毎年多くの観光客が訪れます。大阪は食べ物がおいしいことで有名です。\n"
            "北海道は冬になると雪が多く、スキーを楽しむ人が集まります。沖縄の海はとても美しく、夏には泳ぐことができます。")


@pytest.mark.parametrize("text", [CHINESE, JAPANESE])
def test_prose_written_without_spaces_passes_every_filter_unchanged(text: str) -> None:
    # every character is a word; English word-shape rules (mean length, stop words, short lines) skip it
    pipeline = CleanPipeline([MinWords(50), *quality_steps(QualityConfig())])
    assert [d.text for d in pipeline.run([document(text)])] == [text]
    assert not any(count for count in pipeline.counts.values())


def test_quality_steps_follow_the_switches() -> None:
    off = {name: {"enabled": False} for name in ("gopher_repetition", "gopher_quality", "c4", "fineweb")}
    assert quality_steps(QualityConfig(**off)) == []
    names = [step.name for step in quality_steps(QualityConfig())]
    assert names == ["gopher_repetition", "gopher_quality", "c4_lines", "c4_page", "fineweb_quality"]
    assert len(set(QUALITY_DROP_REASONS)) == len(QUALITY_DROP_REASONS)


def test_config_errors_name_field_and_value() -> None:
    with pytest.raises(ValidationError) as error:
        QualityConfig(gopher_quality={"min_words": 200, "max_words": 100}, fineweb={"max_short_line_ratio": 1.5},
                      c4={"drop_curly": False})
    message = str(error.value)
    assert "min_words=200 is above max_words=100" in message
    assert "max_short_line_ratio" in message and "drop_curly" in message


