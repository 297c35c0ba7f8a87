"""The evaluate stage end to end on tiny data: tasks x models x seeds, reports, resume, intrinsic metrics."""

import json
import math
import shutil

import pyarrow as pa
import pytest
from pydantic import ValidationError
from transformers import AutoTokenizer

from tasks.evaluate.evaluation import EvaluateConfig, run_evaluation
from tasks.evaluate.results import render_results
from tasks.evaluate.url_section import UrlSectionTask
from tests.tasks.eval_fixtures import model_dir, snapshot_dir, tiny_config  # noqa: F401 (fixtures)


def test_run_evaluation_beats_chance_and_writes_reports(snapshot_dir, model_dir, tmp_path):  # noqa: F811
    cfg = tiny_config()
    logged: list[tuple[dict, int]] = []
    stats = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path, log_metrics=lambda m, s: logged.append((m, s)))

    assert stats["runs"] == 6  # 2 models (pretrained, scratch) x (2 learning rates + 1 extra seed)
    # chance is 1/3; a 1-layer, 32-wide model sometimes stalls on a two-class plateau in 40 steps
    assert stats["url-section_pretrained_test_accuracy"] > 0.5
    assert stats["url-section_scratch_test_accuracy"] > 0.5
    assert stats["url-section_pretrained_gain_accuracy"] == pytest.approx(
        stats["url-section_pretrained_test_accuracy"] - stats["url-section_scratch_test_accuracy"])
    assert [step for _, step in logged] == list(range(6))

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["tasks"]["url-section"]["labels"] == ["animals", "cooking", "sport"]
    assert set(results["summary"]["url-section"]) == {"pretrained", "scratch"}
    assert len(results["runs"]) == 6
    assert sum(r["chosen"] for r in results["runs"] if r["phase"] == "lr_search") == 2
    table = (tmp_path / "results.md").read_text()
    assert table == render_results(results)
    assert "| url-section | pretrained |" in table and "| url-section | scratch |" in table
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")
    saved = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*.json"))]
    assert len(saved) == 6 and all({"phase", "chosen", "task", "model", "seed"} <= set(r) for r in saved)

    # a second attempt in the same out_dir reuses every finished run
    again = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path)
    assert again["url-section_pretrained_test_accuracy"] == stats["url-section_pretrained_test_accuracy"]
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]


def test_a_second_evaluation_reuses_the_shared_scratch_runs_and_only_those(
    snapshot_dir, model_dir, tmp_path, caplog  # noqa: F811
):
    cfg = tiny_config(learning_rates=[1e-2], seeds=[0])
    shared = tmp_path / "shared"
    cache = shared / "scratch-runs"
    first = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path / "a", shared_dir=shared)
    assert len(list(cache.glob("*.json"))) == 1  # one scratch run: 1 lr x 1 seed

    with caplog.at_level("INFO", logger="tasks.evaluate.evaluation"):
        second = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path / "b", shared_dir=shared)
    reused = [r.getMessage() for r in caplog.records if "from-scratch run" in r.getMessage()]
    assert len(reused) == 1  # the pretrained model is fine-tuned again, scratch is not
    assert second["url-section_scratch_test_accuracy"] == first["url-section_scratch_test_accuracy"]

    other_seed = run_evaluation(tiny_config(learning_rates=[1e-2], seeds=[1]), model_dir, snapshot_dir,
                                tmp_path / "c", shared_dir=shared)
    assert len(list(cache.glob("*.json"))) == 2  # another seed is another run
    assert "url-section_scratch_test_accuracy" in other_seed


def test_two_pretrained_models_and_two_tasks_in_one_table(snapshot_dir, model_dir, tmp_path):  # noqa: F811
    other = tmp_path / "pretrain" / "abc123" / "model"
    shutil.copytree(model_dir, other)
    tasks = [UrlSectionTask(min_documents_per_class=5, chunks_per_document=1),
             UrlSectionTask(name="sections-long", min_documents_per_class=5, chunks_per_document=2)]
    cfg = tiny_config(tasks=tasks, compare_models=[other], learning_rates=[1e-2], seeds=[0])
    stats = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path / "out")
    assert stats["runs"] == 2 * 3  # 2 tasks x (pretrained, abc123, scratch) x 1 lr x 1 seed
    for task in ("url-section", "sections-long"):
        for model in ("pretrained", "abc123"):
            assert f"{task}_{model}_gain_accuracy" in stats
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| sections-long | abc123 |" in table


def _instances(path, model_dir, rows: int, masked: bool) -> None:  # noqa: F811
    """A validation instance shard: [CLS] A [SEP] B [SEP] of real words, position 1 masked (or no masks)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    a = tokenizer("the horse and the goose ate flour with butter in the oven", add_special_tokens=False)["input_ids"]
    b = tokenizer("the team scored a goal", add_special_tokens=False)["input_ids"]
    tokens = [tokenizer.cls_token_id, *a, tokenizer.sep_token_id, *b, tokenizer.sep_token_id]
    original = tokens[1]
    if masked:
        tokens[1] = tokenizer.mask_token_id
    schema = pa.schema([("input_ids", pa.list_(pa.uint16())), ("token_type_ids", pa.list_(pa.uint8())),
                        ("masked_lm_positions", pa.list_(pa.uint16())), ("masked_lm_ids", pa.list_(pa.uint16())),
                        ("next_sentence_label", pa.int8())])
    table = pa.table({
        "input_ids": [tokens] * rows,
        "token_type_ids": [[0] * (len(a) + 2) + [1] * (len(b) + 1)] * rows,
        "masked_lm_positions": [[1] if masked else []] * rows,
        "masked_lm_ids": [[original] if masked else []] * rows,
        "next_sentence_label": [0, 1] * (rows // 2),
    }, schema=schema)
    path.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(path / "instances-00000.arrow"), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(table)


def test_intrinsic_metrics_and_fill_mask(snapshot_dir, model_dir, tmp_path):  # noqa: F811
    _instances(tmp_path / "instances" / "validation", model_dir, 8, masked=True)
    cfg = tiny_config(learning_rates=[1e-2], seeds=[0], intrinsic={"max_instances": 6, "fill_mask_examples": 2})
    stats = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path / "out", instances_dir=tmp_path / "instances")
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    intrinsic = results["intrinsic"]["pretrained"]
    assert intrinsic["instances"] == 6 and intrinsic["masked_positions"] == 6
    assert 0.0 <= stats["pretrained_mlm_accuracy"] <= 1.0
    assert stats["pretrained_perplexity"] == pytest.approx(2.718281828 ** intrinsic["mlm_loss"])
    assert len(intrinsic["fill_mask"]) == 2 and len(intrinsic["fill_mask"][0]["predictions"]) == 5
    assert "## Intrinsic: held-out masked-LM" in (tmp_path / "out" / "results.md").read_text()

    _instances(tmp_path / "dynamic" / "validation", model_dir, 4, masked=False)
    stats = run_evaluation(cfg, model_dir, snapshot_dir, tmp_path / "out2", instances_dir=tmp_path / "dynamic")
    assert "pretrained_mlm_accuracy" not in stats
    assert "dynamic masking" in json.loads((tmp_path / "out2" / "results.json").read_text())["intrinsic"]["pretrained"]["skipped"]


def test_bad_config_is_reported_with_the_value(tmp_path):
    with pytest.raises(ValidationError, match="has no capture group"):
        UrlSectionTask(label_from_url=r"^https?://[^/]+/")
    with pytest.raises(ValidationError, match="not a valid regex"):
        UrlSectionTask(label_from_url=r"([a-z]+")
    with pytest.raises(ValidationError) as error:  # every problem at once
        EvaluateConfig(learning_rates=[0.0, 3e-4], seeds=[], max_seq_length=4)
    assert {e["loc"][0] for e in error.value.errors()} == {"learning_rates", "seeds", "max_seq_length"}
    with pytest.raises(ValidationError, match="set learning_rates instead"):
        EvaluateConfig(finetune={"learning_rate": 1e-3})
    dumped = EvaluateConfig().model_dump(mode="json")  # what a deployment sends back: every field, defaults too
    assert EvaluateConfig.model_validate(dumped) == EvaluateConfig()
    with pytest.raises(ValidationError, match="extra"):
        EvaluateConfig(learning_rate=1e-3)
    with pytest.raises(ValidationError, match=r"task names \['url-section', 'url-section'\] repeat"):
        EvaluateConfig(tasks=[{"type": "url-section"}, {"type": "url-section"}])
    with pytest.raises(ValidationError, match="hold no config.json"):
        EvaluateConfig(compare_models=[tmp_path])
    with pytest.raises(ValidationError, match="'url-section', 'glue', 'files'"):
        EvaluateConfig(tasks=[{"type": "squad"}])


def test_missing_inputs_fail_before_training(tmp_path, model_dir):  # noqa: F811
    with pytest.raises(ValueError, match="has no config.json"):
        run_evaluation(tiny_config(), tmp_path / "nope", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no documents-"):
        run_evaluation(tiny_config(), model_dir, tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="exceeds model pretrained's 64 positions"):
        run_evaluation(EvaluateConfig(max_seq_length=128), model_dir, tmp_path, tmp_path / "out")




def test_the_grid_goes_on_past_its_edge_while_dev_improves():
    from tasks.evaluate.evaluation import _beyond_the_edge, evaluate_model_on_task
    from tasks.evaluate.task_data import TaskData

    assert _beyond_the_edge([1e-4, 3e-4, 1e-3], 1e-3, 2) == [0.00333, 0.0111]
    assert _beyond_the_edge([1e-4, 3e-4, 1e-3], 1e-4, 1) == [3.33e-05]
    assert _beyond_the_edge([1e-4, 3e-4, 1e-3], 3e-4, 2) == []  # the best is inside the grid
    assert _beyond_the_edge([1e-3], 1e-3, 2) == []  # one rate: a fixed choice, not a grid
    assert _beyond_the_edge([0.1, 0.5], 0.5, 3) == []  # 2.5 is no learning rate

    class Runner:  # fine-tuning replaced by a dev score that peaks at lr 0.0111 (tested here: the search only)
        cfg = tiny_config(learning_rates=[1e-4, 3e-4, 1e-3], seeds=[0, 1], max_grid_extensions=3)

        def __init__(self):
            self.rates = []

        def run(self, data, model, init_from, config_dir, lr, seed):
            self.rates.append((lr, seed))
            score = 1.0 - abs(math.log10(lr / 0.0111))
            return {"learning_rate": lr, "seed": seed, "dev_accuracy": score, "test_accuracy": score}

        def mark(self, record, **fields):
            return {**record, **fields}

    runner = Runner()
    data = TaskData("t", "classification", ["a", "b"], {}, ("accuracy",))
    row, records = evaluate_model_on_task(runner, data, "pretrained", None, None)
    # 3.33e-3 better, 1.11e-2 better, 3.7e-2 worse: stop there; the chosen rate's second seed runs last
    assert runner.rates == [(1e-4, 0), (3e-4, 0), (1e-3, 0), (0.00333, 0), (0.0111, 0), (0.037, 0), (0.0111, 1)]
    assert row["learning_rate"] == 0.0111 and row["grid_extended"] == [0.00333, 0.0111, 0.037]
    assert len(records) == 7


def test_a_pretrained_model_behind_scratch_beyond_the_seed_noise_is_called_out():
    from tasks.evaluate.evaluation import behind_scratch_warnings

    def results(pretrained_mean, seeds=3):
        rows = {"pretrained": {"accuracy_mean": pretrained_mean, "accuracy_std": 0.01, "seeds": seeds,
                               "learning_rate": 1e-3},
                "scratch": {"accuracy_mean": 0.47, "accuracy_std": 0.016, "seeds": seeds, "learning_rate": 1e-3}}
        return {"summary": {"ood": rows}, "tasks": {"ood": {"metrics": ["accuracy"]}},
                "intrinsic": {"pretrained": {"mlm_accuracy": 0.076}}}

    (warning,) = behind_scratch_warnings(results(0.325))  # the 175-step case: -14.5 points
    assert warning.startswith("ood: the pretrained model is behind the same model trained from scratch by 0.1450")
    assert "held-out MLM accuracy 0.076" in warning and "pretrain.max_steps" in warning
    assert behind_scratch_warnings(results(0.46)) == []  # 1 point behind: inside the seed noise
    assert behind_scratch_warnings(results(0.325, seeds=1)) == []  # one seed: the noise is unknown
