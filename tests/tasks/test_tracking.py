from tasks.tracking import Tracker, flatten, missing_store, mlflow_uri
from tests.tasks.eval_fixtures import model_dir, snapshot_dir  # noqa: F401 (fixtures)


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_runs_nest_and_log_in_batches_to_a_real_sqlite_store(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")
    with tracker.run("pipeline") as parent:
        with tracker.run("corpus", parent, tags={"artifact_id": "abc"}) as child:
            tracker.log_params(child, {f"p{i}": i for i in range(250)} | {"long": "x" * 7000})
            tracker.log_metrics(child, {f"m{i}": float(i) for i in range(1200)} | {"skipped": "text"}, step=3)
    run = tracker.client.get_run(child)
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 251 and len(run.data.params["long"]) == 6000
    assert len(run.data.metrics) == 1200 and "skipped" not in run.data.metrics
    assert run.data.tags["artifact_id"] == "abc"
    assert [r.info.run_id for r in tracker.child_runs(parent)] == [child]


def test_failed_block_marks_run_failed(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")
    try:
        with tracker.run("boom") as run_id:
            raise RuntimeError("stage crashed")
    except RuntimeError:
        pass
    assert tracker.client.get_run(run_id).info.status == "FAILED"


def test_a_fill_mask_model_is_registered_as_versions_that_load_tag_alias_and_are_found(tmp_path, model_dir):  # noqa: F811
    import mlflow

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")
    versions = []
    for step in range(2):
        with tracker.run(f"pretrain-{step}") as run_id:
            versions.append(tracker.log_fill_mask_model(run_id, model_dir, "bert", "the [MASK] sat on the mat."))
            tracker.update_model_version("bert", versions[-1], f"model {step}", {"artifact.pretrain": f"p{step}"})
    assert versions == ["1", "2"]
    tracker.set_alias("bert", "newest", "2")
    assert tracker.aliased_version("bert", "newest") == ("2", {"artifact.pretrain": "p1"})
    assert tracker.aliased_version("bert", "best") is None
    assert [version for version, _ in tracker.model_versions("bert", "artifact.pretrain", "p0")] == ["1"]
    assert tracker.client.get_model_version("bert", "1").description == "model 0"
    with mlflow_uri(tracker.tracking_uri):
        [guess] = mlflow.pyfunc.load_model("models:/bert@newest").predict(["the [MASK] sat on the mat."])
    assert isinstance(guess, str) and guess  # a fill-mask pipeline's top token


def test_system_metrics_are_sampled_into_the_run_while_the_block_runs(tmp_path):
    import time

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="test")
    with tracker.run("pretrain") as run_id:
        with tracker.system_metrics(run_id, interval_s=0.2):
            time.sleep(1.0)
    metrics = tracker.client.get_run(run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics), metrics
    history = tracker.client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2 and all(0.0 <= m.value <= 100.0 for m in history)


def test_reading_a_store_never_creates_one_or_an_experiment(tmp_path):
    typo = tmp_path / "typo.db"
    assert missing_store(f"sqlite:///{typo}").startswith(f"no SQLite MLflow store at {typo}")
    assert not typo.exists()
    store = tmp_path / "mlflow.db"
    uri = f"sqlite:///{store}"
    Tracker(uri, experiment="test")  # the store a pipeline wrote
    assert missing_store(uri) is None
    assert missing_store(str(store)).endswith(f"for a SQLite store give sqlite:///{store}")  # a plain path
    reader = Tracker(uri, create=False)
    assert reader.experiment_id is None and reader.client.get_experiment_by_name("pretrainflow") is None


def test_run_url_points_at_a_tracking_server_and_is_none_for_a_local_store(tmp_path):
    local = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with local.run("stage") as run_id:
        assert local.run_url(run_id) is None  # a SQLite store has no web page of its own
    served = Tracker.__new__(Tracker)  # the address arithmetic only: no server is needed to form the link
    served.tracking_uri, served.experiment_id = "http://127.0.0.1:5000/", "7"
    assert served.run_url("abc") == "http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning"


class Stopped(Exception):
    """What this test's SIGTERM handler raises, as Prefect's engine raises its termination signal."""


def test_a_stop_arriving_while_the_run_is_created_ends_it_failed_not_running(tmp_path, monkeypatch):
    import os
    import signal

    import pytest

    def stop(received, frame):
        raise Stopped()

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    create = tracker.client.create_run

    def create_then_stopped(*args, **kwargs):  # the store has the run when the stop lands
        created = create(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return created

    monkeypatch.setattr(tracker.client, "create_run", create_then_stopped)
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Stopped), tracker.run("stopped"):
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    [run] = tracker.client.search_runs([tracker.experiment_id])
    assert run.info.run_name == "stopped" and run.info.status == "FAILED"
