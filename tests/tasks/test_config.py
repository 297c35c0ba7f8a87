import re

import fsspec
import pytest
import yaml

from tasks.config import PRESETS_DIR, ConfigError, load_config, preset_names


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_validates(preset):
    config = load_config(preset)
    assert config.pretrain.max_steps >= 1


def test_presets_exist():
    assert {"demo", "tiny"} <= set(preset_names())


def test_overrides_are_parsed_as_yaml_values():
    config = load_config("tiny", ["pretrain.max_steps=7", "pretrain.learning_rate=5e-4", "evaluate.seeds=[3, 4]"])
    assert config.pretrain.max_steps == 7
    assert config.pretrain.learning_rate == 5e-4
    assert config.evaluate.seeds == [3, 4]


def test_every_problem_is_reported_at_once_with_field_value_and_what_is_valid(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", [
            "pretrain.max_step=100",                     # unknown field (typo)
            "pretrain.batch_size=many",                  # wrong type
            "instances.masked_lm_prob=1.5",              # out of range
            f"tokenize.tokenizer_path={tmp_path}/nope",  # missing folder
        ])
    message = str(caught.value)
    assert "4 problem(s)" in message
    assert "pretrain.max_step: unknown field (did you mean 'max_steps'?); valid fields here: adam_beta1" in message
    assert "pretrain.batch_size" in message and "'many'" in message
    assert "instances.masked_lm_prob" in message and "1.5" in message
    assert "tokenize.tokenizer_path" in message and "nope" in message


def test_unknown_section_names_the_valid_sections():
    with pytest.raises(ConfigError, match=r"pretrian: unknown field \(did you mean 'pretrain'\?\); valid fields here: corpus, data_root"):
        load_config("tiny", ["pretrian.max_steps=3"])


def test_bad_override_syntax_and_unknown_preset():
    with pytest.raises(ConfigError, match="not of the form section.field=value"):
        load_config("tiny", ["pretrain.max_steps"])
    with pytest.raises(ConfigError, match="no preset named 'nosuch'; presets: .*demo"):
        load_config("nosuch")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/tmp/definitely-missing.yaml")


def test_an_install_without_the_presets_folder_says_how_to_get_it(tmp_path, monkeypatch):
    import tasks.config

    monkeypatch.setattr(tasks.config, "PRESETS_DIR", tmp_path / "site-packages" / "configs")  # as in a plain wheel
    with pytest.raises(ConfigError, match=r"no presets at .*configs.*pip install -e <repo>"):
        load_config("tiny")


def test_hidden_size_must_divide_into_heads():
    with pytest.raises(ConfigError, match="pretrain"):
        load_config("tiny", ["pretrain.hidden_size=100", "pretrain.num_attention_heads=3"])


def test_unreadable_yaml_is_a_config_error_naming_the_file_or_override_and_where(tmp_path):
    unclosed = tmp_path / "unclosed.yaml"
    unclosed.write_text("pretrain: {max_steps: 3\ntokenize: {}\n")
    with pytest.raises(ConfigError, match=r"unclosed.yaml is not valid YAML: expected ',' or '}', but got ':' "
                                          r"at line 2, column 9 \(while parsing a flow mapping started at line 1"):
        load_config(unclosed)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("pretrain:\n  seed: 1  # café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml is not UTF-8 text \(byte 0xe9 on line 2\); save it as UTF-8"):
        load_config(latin1)
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", ["corpus.crawl.exclude_patterns=[a", "pretrain.seed={"])
    message = str(caught.value)
    assert "2 problem(s)" in message
    assert ("override 'corpus.crawl.exclude_patterns=[a': value '[a' is not valid YAML: expected ',' or ']', "
            "but got '<stream end>' at line 1, column 3") in message
    assert "or quote text: --set 'pretrain.seed=\"...\"'" in message


def test_size_set_on_a_preset_with_a_shape_replaces_the_presets_shape(tmp_path):
    assert load_config("tiny").pretrain.hidden_size == 32  # tiny.yaml names its own shape
    base = load_config("tiny", ["pretrain.size=base"]).pretrain
    assert (base.size, base.hidden_size, base.num_hidden_layers, base.num_attention_heads,
            base.intermediate_size) == ("base", 768, 12, 12, 3072)
    six_layers = load_config("tiny", ["pretrain.num_hidden_layers=6", "pretrain.size=base"]).pretrain
    assert (six_layers.hidden_size, six_layers.num_hidden_layers) == (768, 6)  # a shape field set too still wins
    preset = tmp_path / "base6.yaml"
    tree = yaml.safe_load((PRESETS_DIR / "tiny.yaml").read_text())
    preset.write_text(yaml.safe_dump({**tree, "pretrain": {"size": "base", "num_hidden_layers": 6}}))
    assert load_config(preset).pretrain.num_hidden_layers == 6  # in one file, a named field overrides size
    assert load_config(preset, ["pretrain.seed=5"]).pretrain.num_hidden_layers == 6


def test_a_bare_name_is_a_preset_whatever_the_working_folder_holds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. a folder of demo outputs
    (tmp_path / "tiny").write_text("not: [yaml")
    (tmp_path / "mine").write_text((PRESETS_DIR / "tiny.yaml").read_text())
    assert load_config("demo").pretrain.max_steps == 500
    assert load_config("tiny").pretrain.hidden_size == 32
    assert load_config("./mine").pretrain.hidden_size == 32  # a path with a separator is a file
    with pytest.raises(ConfigError, match=r"no preset named 'mine'; .* to read the file 'mine' in this folder, pass ./mine"):
        load_config("mine")
    with pytest.raises(ConfigError, match=r"config file \./demo is a directory; give a YAML file or a preset name \(demo, "):
        load_config("./demo")


def test_a_set_value_yaml_reads_as_a_number_or_bool_for_a_text_field_says_to_quote_it():
    with pytest.raises(ConfigError) as caught:
        load_config("tiny", ["tracking.experiment=2024", "tracking.registered_model=no", "pretrain.max_steps=x"])
    message = str(caught.value)
    assert ("tracking.experiment: Input should be a valid string (got 2024); to pass it as text, quote it: "
            "--set 'tracking.experiment=\"2024\"'") in message
    assert "tracking.registered_model: Input should be a valid string (got False); to pass it as text, quote it: " \
           "--set 'tracking.registered_model=\"no\"'" in message
    assert "pretrain.max_steps: Input should be a valid integer, unable to parse string as an integer (got 'x')\n" \
           in message + "\n"  # a wrong text gets no quoting hint
    assert load_config("tiny", ['tracking.experiment="2024"']).tracking.experiment == "2024"


def test_a_data_root_whose_filesystem_is_not_installed_is_refused_naming_the_package():
    uninstalled = {p: str(e) for p in ("s3", "gs", "abfs", "sftp") if (e := _import_error(p))}
    if not uninstalled:
        pytest.skip("every remote fsspec backend tried is installed here")
    protocol, err = next(iter(uninstalled.items()))
    with pytest.raises(ConfigError, match=rf"data_root: the {protocol}:// filesystem is not installed "
                                          rf"\({re.escape(err)}\); install its package or use a local folder"):
        load_config("tiny", [f"data_root={protocol}://bucket/pretrainflow"])
    with pytest.raises(ConfigError, match=r"data_root: fsspec knows no nosuch:// filesystem"):
        load_config("tiny", ["data_root=nosuch://bucket"])
    assert load_config("tiny", ["data_root=memory://pretrainflow"]).data_root == "memory://pretrainflow"


def _import_error(protocol: str) -> ImportError | None:
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        return err
    return None


def test_a_glue_task_missing_from_the_local_cache_is_a_config_error():
    # offline (tests/conftest.py) with no GLUE in the cache: the config says so before any stage runs
    with pytest.raises(ConfigError, match=r"evaluate.tasks.1.glue: GLUE 'rte' is not in the local Hugging Face "
                                          r"cache .* or set data_dir to a folder with train.\* and validation.\*"):
        load_config("tiny", ["evaluate.tasks=[{type: url-section}, {type: glue, task: rte}]"])
