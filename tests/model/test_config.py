import pytest
from pydantic import ValidationError

from model.config import SIZES, PretrainConfig
from tasks.config import load_config


@pytest.mark.parametrize(
    ("size", "layers", "hidden"),
    [("tiny", 2, 128), ("mini", 4, 256), ("small", 4, 512), ("medium", 8, 512), ("base", 12, 768), ("large", 24, 1024)],
)
def test_size_presets_follow_google_bert_miniatures(size, layers, hidden):
    cfg = PretrainConfig(size=size)
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (layers, hidden)
    assert cfg.num_attention_heads == hidden // 64 and cfg.intermediate_size == 4 * hidden


def test_explicit_fields_override_the_preset_and_survive_a_round_trip():
    cfg = PretrainConfig(size="base", num_hidden_layers=6)
    assert (cfg.num_hidden_layers, cfg.hidden_size) == (6, 768)
    assert PretrainConfig.model_validate(cfg.model_dump()) == cfg
    assert PretrainConfig() == PretrainConfig(size="tiny")  # the field defaults are the tiny preset
    assert set(SIZES) == {"tiny", "mini", "small", "medium", "base", "large"}


def test_size_preset_from_an_override_and_presets_keep_their_fields():
    assert load_config("tiny", ["pretrain.size=mini"]).pretrain.hidden_size == 256  # replaces tiny.yaml's shape
    assert load_config("demo", ["pretrain.size=mini"]).pretrain.hidden_size == 256
    assert load_config("tiny").pretrain.hidden_size == 32


def test_bad_values_are_named_together():
    with pytest.raises(ValidationError) as error:
        PretrainConfig(size="huge")
    assert "huge" in str(error.value) and "tiny" in str(error.value)
    with pytest.raises(ValueError) as error:
        PretrainConfig(batch_size=10, gradient_accumulation_steps=4, device="cpu", precision="bf16")
    message = str(error.value)
    assert "batch_size=10 is not divisible by gradient_accumulation_steps=4" in message
    assert "precision='bf16' needs a GPU" in message
