"""The `pretrainflow` command: run flows, run one stage's work alone, inspect configs and artifacts."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flows.signals import redeliver_swallowed_sigterm
from tasks.errors import ConfigError, record_traceback, user_message
from tasks.presets import preset_names

if TYPE_CHECKING:
    from tasks.config import PipelineConfig

DEBUG_ENV = "PRETRAINFLOW_DEBUG"  # read by flows/logs.py (not imported here: it loads Prefect)

FLOW_NAMES = ("corpus", "tokenize", "instances", "pretrain", "evaluate", "pipeline")


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's stop, `timeout`, `docker stop`) leaves the way Ctrl-C does: on the way out
    the open MLflow runs end FAILED and the Prefect flow run CRASHED, instead of staying RUNNING for good."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script.

    A failure the user can fix (tasks.errors.user_message: a bad config or input file, a damaged artifact, a
    full disk) ends it with one `error:` block and exit code 2, its traceback in the error log; `--debug`
    prints the traceback instead. Anything else is a bug and keeps its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if debug:
        os.environ[DEBUG_ENV] = "1"  # flows keep the tracebacks of task runs too
    signal.signal(signal.SIGTERM, _terminate)
    redeliver_swallowed_sigterm()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    try:
        return args.handler(args)
    except Exception as err:
        message = user_message(err)
        if message is None or debug:
            raise
        print(f"error: {message}", file=sys.stderr)
        if getattr(err, "traceback_helps", True):  # not for a bad config: its problems are the whole story
            log = record_traceback(err, " ".join(["pretrainflow", *(sys.argv[1:] if argv is None else argv)]))
            where = f"the traceback is in {log}; " if log else ""
            print(f"({where}--debug prints it here)", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pretrainflow", description=__doc__)
    debug_help = "print the traceback of an error a user can fix (bad input, a damaged file) instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    common = argparse.ArgumentParser(add_help=False)  # so --debug also works after the command
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", default=None,
                       help=f"preset name ({', '.join(preset_names())}) or path to a YAML file (ending in .yaml/.yml "
                            "or containing a /)")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one field, e.g. --set pretrain.max_steps=100 (repeatable)")
        return p

    run = with_config(command("run", help="run one stage flow, or the whole pipeline, under Prefect"))
    run.add_argument("flow", choices=FLOW_NAMES)
    run.add_argument("--refresh", action="store_true",
                     help="corpus only: re-crawl (conditional requests) on top of the newest snapshot of this config")
    run.set_defaults(handler=cmd_run)

    stage_task = with_config(command(
        "task", help="run one stage's work as a plain function: no Prefect, no MLflow (for debugging)"))
    stage_task.add_argument("stage", choices=FLOW_NAMES[:-1])
    stage_task.add_argument("--output", type=Path, required=True, help="folder to write into")
    stage_task.add_argument("--input", dest="inputs", action="append", default=[], metavar="STAGE=DIR",
                            help="read an upstream stage from DIR instead of the artifact store")
    stage_task.set_defaults(handler=cmd_task)

    demo = with_config(command("demo", help="the whole pipeline on the demo preset, with a summary"))
    demo.set_defaults(handler=cmd_demo, config="demo")

    show = with_config(command("config", help="print the resolved, validated config"))
    show.set_defaults(handler=cmd_config)

    serve = command("serve", help="Prefect server + worker and MLflow server on 127.0.0.1, deployments registered")
    serve.add_argument("--host", default="127.0.0.1", help="address every server binds to")
    serve.add_argument("--prefect-port", type=int, default=4200, help="Prefect server port (0 = any free port)")
    serve.add_argument("--mlflow-port", type=int, default=5000, help="MLflow server port (0 = any free port)")
    serve.add_argument("--pool", default="pretrainflow", help="process work pool the worker serves")
    serve.add_argument("--tracking-uri", default=None,
                       help="MLflow store the server uses; default: the embedded one ($MLFLOW_TRACKING_URI or ./mlflow.db)")
    serve.add_argument("--artifact-root", type=Path, default=Path("mlruns"),
                       help="MLflow artifact folder for new experiments")
    serve.add_argument("--data-root", default="data",
                       help="where runs started from the UI write their artifacts (the deployments' form value; "
                            "a folder, made absolute, or an fsspec URL); default: ./data")
    serve.add_argument("--no-deploy", dest="deploy", action="store_false",
                       help="do not register deployments/prefect.yaml")
    serve.set_defaults(handler=cmd_serve)

    trigger = with_config(command(
        "trigger", help="run a deployment on the served Prefect: its form's config plus --set overrides, checked first"))
    trigger.add_argument("deployment", help="pipeline, corpus, ..., corpus-refresh, or FLOW/DEPLOYMENT")
    trigger.add_argument("--wait", action="store_true", help="follow the run to its end; exit 1 unless it completes")
    trigger.set_defaults(handler=cmd_trigger)

    compare = command("compare", help="runs side by side: params, artifacts, cache hits and metrics per stage")
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="MLflow run ids (pipeline or stage runs)")
    shown = compare.add_mutually_exclusive_group()
    shown.add_argument("--all", dest="only_differences", action="store_false", default=None,
                       help="every row (the default with three runs or more)")
    shown.add_argument("--diff", dest="only_differences", action="store_true",
                       help="only rows whose values differ (the default with two runs)")
    compare.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else ./mlflow.db")
    compare.set_defaults(handler=cmd_compare)

    artifacts = command("artifacts", help="list artifacts under the data root with their lineage")
    artifacts.add_argument("--data-root", default=None, help="folder or fsspec URL; default: data_root of --config or ./data")
    artifacts.add_argument("--stage", default=None, choices=FLOW_NAMES[:-1])
    artifacts.add_argument("--verify", action="store_true", help="re-check every file against its manifest")
    with_config(artifacts)
    artifacts.set_defaults(handler=cmd_artifacts)

    sweep = command("sweep", help="an ablation: variants of a base config, every distinct artifact built once, "
                                  "compared in one report")
    sweep.add_argument("sweep_file", nargs="?", type=Path, default=None,
                       help="a sweep YAML (configs/sweeps/); the options below add to it")
    sweep.add_argument("--config", "-c", default=None, help="base config: preset name or path to a YAML file")
    sweep.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one field of the base, for every variant (repeatable)")
    sweep.add_argument("--axis", dest="axes", action="append", default=[], metavar="FIELD=V1,V2",
                       help="a field and the values to try, e.g. --axis instances.objective=nsp,sop,mlm (repeatable: "
                            "every combination is a variant)")
    sweep.add_argument("--seeds", default=None, help="pretraining seeds every variant runs with, e.g. 0,1,2")
    sweep.add_argument("--max-parallel", type=int, default=None, help="variants pretraining at once (default: one per GPU, 1 on CPU)")
    sweep.add_argument("--name", default=None, help="the sweep's name (its MLflow parent run)")
    sweep.add_argument("--plan", action="store_true", help="print the variants and artifact counts; run nothing")
    sweep.set_defaults(handler=cmd_sweep)
    return parser


def _config(args: argparse.Namespace) -> PipelineConfig:
    from tasks.config import load_config  # the config classes: ~0.7 CPU-s, paid by the commands that read one

    return load_config(args.config, args.overrides)


def cmd_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(_config(args).model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _config(args)  # validated before Prefect or any work starts
    if args.refresh and args.flow != "corpus":
        raise ConfigError("--refresh", [f"only the corpus flow refreshes, not {args.flow!r}"])
    if args.flow != "pipeline":  # a missing upstream artifact in one line, before Prefect starts
        from tasks.artifacts import ArtifactStore
        from tasks.stages import check_inputs, resolve_ids

        check_inputs(args.flow, ArtifactStore(config.data_root), resolve_ids(config))
    result = run_flow(args.flow, config, refresh=args.refresh)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from tasks.sweep.plan import parse_axes, parse_values, plan_sweep, read_sweep_yaml, validate_sweep

    spec = read_sweep_yaml(args.sweep_file) if args.sweep_file else {}
    spec["overrides"] = [*spec.get("overrides", []), *args.overrides]
    if args.axes:
        spec["axes"] = {**spec.get("axes", {}), **parse_axes(args.axes)}
    given = {"config": args.config, "seeds": None if args.seeds is None else parse_values(args.seeds),
             "max_parallel": args.max_parallel, "name": args.name}
    spec.update({key: value for key, value in given.items() if value is not None})
    sweep = validate_sweep(spec, str(args.sweep_file or "sweep"))
    plan = plan_sweep(sweep)  # every variant validated before anything runs
    print(plan.summary())
    for variant in plan.variants:
        print(f"  {variant.name}: " + " ".join(f"{stage}/{artifact_id[:8]}" for stage, artifact_id in variant.ids.items()))
    if args.plan:
        return 0
    from flows.stage import result_of
    from flows.sweep import sweep_flow

    result = result_of(sweep_flow(sweep, return_state=True))
    print(result["report"])
    print(json.dumps({key: result[key] for key in ("summary", "built", "mlflow_run_id", "prefect_flow_run_id")}, indent=2))
    return 0


def run_flow(name: str, config: PipelineConfig, refresh: bool = False) -> dict[str, Any]:
    """Run a stage flow or the pipeline flow (ephemeral Prefect unless PREFECT_API_URL is set)."""
    from flows.stage import result_of, stage_flow

    if name == "pipeline":
        from flows.pipeline import pipeline_flow

        state = pipeline_flow(config, return_state=True)
    elif refresh:
        state = stage_flow(name)(config, refresh=True, return_state=True)
    else:
        state = stage_flow(name)(config, return_state=True)  # only this stage's flow module is imported
    return result_of(state)  # a refusal raises an InputError with the run's state message


def cmd_task(args: argparse.Namespace) -> int:
    from tasks.artifacts import ArtifactStore
    from tasks.parallel import local_map
    from tasks.stages import STAGES, StageContext, resolve_ids

    config = _config(args)
    stage = STAGES[args.stage]
    malformed = [item for item in args.inputs if "=" not in item]
    if malformed:
        raise ConfigError("--input", [f"--input {item!r} is not of the form STAGE=DIR" for item in malformed])
    given = dict(item.split("=", 1) for item in args.inputs)
    unknown = sorted(set(given) - set(stage.inputs))
    if unknown:
        raise ConfigError("--input", [f"stage {stage.name} reads {list(stage.inputs) or 'nothing'}, not {unknown}"])
    ids, store = resolve_ids(config), ArtifactStore(config.data_root)
    def input_dir(up: str) -> Path:  # a given folder, else the artifact (fetched from a remote data root)
        if up in given:
            return Path(given[up])
        return store.fetch(up, ids[up]) if store.exists(up, ids[up]) else store.path(up, ids[up])

    inputs = {up: input_dir(up) for up in stage.inputs}
    absent = [f"{up}: {path}" for up, path in inputs.items() if not path.is_dir()]
    if absent:
        raise ConfigError("--input", [f"input folder does not exist ({a}); pass --input STAGE=DIR" for a in absent])
    args.output.mkdir(parents=True, exist_ok=True)
    with local_map(config.parallel.workers) as map_shards:  # workers, once started, serve every map of the stage
        context = StageContext(lambda metrics, step: print(f"step {step}: {metrics}"), map_shards)
        stats = stage.work(config, inputs, args.output, context)
    print(json.dumps(stats, indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.serve import ServeOptions, run_until_stopped
    from tasks.tracking import resolve_tracking_uri

    bad = [f"--{name}-port {port}: not a TCP port (0-65535)" for name, port in
           (("prefect", args.prefect_port), ("mlflow", args.mlflow_port)) if not 0 <= port <= 65535]
    if bad:
        raise ConfigError("serve", bad)
    data_root = args.data_root if "://" in args.data_root else str(Path(args.data_root).resolve())
    options = ServeOptions(host=args.host, prefect_port=args.prefect_port, mlflow_port=args.mlflow_port, pool=args.pool,
                           tracking_uri=resolve_tracking_uri(args.tracking_uri),
                           artifact_root=args.artifact_root.resolve(), data_root=data_root,
                           deploy=args.deploy)
    return run_until_stopped(options)


def cmd_trigger(args: argparse.Namespace) -> int:
    import os

    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise ConfigError("trigger", ["a deployment runs on a Prefect server and its worker: start "
                                      "`pretrainflow serve` and set PREFECT_API_URL to the API address it prints"])
    from flows.trigger import trigger, wait_for

    run = trigger(args.deployment, args.config, args.overrides)
    print(f"created flow run {run.name} ({run.id}): {api_url.removesuffix('/api')}/runs/flow-run/{run.id}", flush=True)
    if not args.wait:
        return 0
    run = wait_for(run.id)
    print(f"flow run {run.name}: {run.state.type.value} {run.state.message or ''}".rstrip())
    return 0 if run.state.is_completed() else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from flows.compare import compare_runs, format_table
    from tasks.tracking import Tracker, missing_store, resolve_tracking_uri

    tracking_uri = resolve_tracking_uri(args.tracking_uri)
    problem = missing_store(tracking_uri)  # compare only reads: never create a store or an experiment
    if problem:
        raise ConfigError("--tracking-uri", [problem])
    tracker = Tracker(tracking_uri, create=False)
    unknown = [run_id for run_id in args.run_ids if not tracker.run_exists(run_id)]
    if unknown:
        raise ConfigError("RUN_ID", [f"no MLflow run {run_id!r} in {tracker.tracking_uri}" for run_id in unknown])
    comparison = compare_runs(tracker, args.run_ids)
    only_differences = len(args.run_ids) == 2 if args.only_differences is None else args.only_differences
    print(format_table(comparison.differing() if only_differences else comparison))
    return 0


def cmd_artifacts(args: argparse.Namespace) -> int:
    from tasks.artifacts import ArtifactStore

    root = args.data_root or (_config(args).data_root if args.config else "data")
    store = ArtifactStore(root)
    artifacts = store.list(args.stage)
    unfinished = store.unfinished(args.stage)
    if not artifacts:
        print(f"no artifacts under {store.location}")
    bad = 0
    for a in artifacts:
        inputs = ", ".join(f"{k}/{v}" for k, v in a.inputs.items()) or "-"
        print(f"{a.stage:<10} {a.id}  {a.manifest.get('created_at', '?')}  from: {inputs}  {a.path}")
        if args.verify:
            problems = store.verify(a.stage, a.id)
            bad += bool(problems)
            for p in problems:
                print(f"    CORRUPT {p}")
    resumable = [u for u in unfinished if u.failed is None]
    failed = [u for u in unfinished if u.failed is not None]
    if resumable:
        print("unfinished builds (running, or killed: the same config resumes them; delete one to give it up):")
    for u in resumable:
        print(f"{u.stage:<10} {u.id}  last written {u.last_written:%Y-%m-%dT%H:%M:%SZ}  "
              f"{u.bytes / 2**20:,.1f} MiB  {u.path}")
        if args.verify:
            problems = unfinished_problems(u.path)
            bad += bool(problems)
            for p in problems:
                print(f"    DAMAGED {p} (a rerun resumes from the newest intact checkpoint)")
    if failed:
        print("failed builds (stopped on bad input: fix it and rerun the same config to resume, or delete one):")
    for u in failed:
        print(f"{u.stage:<10} {u.id}  failed {u.last_written:%Y-%m-%dT%H:%M:%SZ}  {u.bytes / 2**20:,.1f} MiB kept  "
              f"{u.path}\n    because: {u.failed}")
    return 1 if bad else 0


def unfinished_problems(staging: Path) -> list[str]:
    """Damaged resumable pieces of an unfinished build (for now its checkpoints), each naming the file."""
    from model.checkpoint_integrity import verify_checkpoint

    problems = []
    for checkpoint in sorted(staging.glob("checkpoints/step-*")):
        if checkpoint.is_dir() and not checkpoint.name.endswith((".tmp", ".deleting")):
            problems += [f"{checkpoint.relative_to(staging.parent)}: {p}" for p in verify_checkpoint(checkpoint)]
    return problems


def cmd_demo(args: argparse.Namespace) -> int:
    from tasks.tracking import ML_LAYOUT, Tracker, resolve_tracking_uri

    config = _config(args)
    started = time.monotonic()
    result = run_flow("pipeline", config)
    minutes = (time.monotonic() - started) / 60
    stages = result["stages"]
    corpus, tokens = stages["corpus"]["stats"], stages["tokenize"]["stats"]
    table = Path(stages["evaluate"]["path"]) / "results.md"
    tracking_uri = config.tracking.tracking_uri or resolve_tracking_uri()
    print("\n" + "=" * 78)
    print(f"pretrainflow demo finished in {minutes:.1f} min "
          f"({sum(s['cache_hit'] for s in stages.values())} of {len(stages)} stages were cache hits)")
    print(f"corpus:  {corpus.get('documents')} documents, {corpus.get('words')} words; "
          f"{tokens.get('tokens')} tokens (train {tokens.get('train_tokens')}, "
          f"validation {tokens.get('validation_tokens')})")
    print(f"model:   {Path(stages['pretrain']['path']) / 'model'}")
    print("\n" + (table.read_text() if table.is_file() else "(no evaluation table)"))
    experiment = Tracker(tracking_uri, config.tracking.experiment, create=False).experiment_id
    print("Open the runs: `make serve` serves both UIs on these stores, then")
    print(f"  MLflow:  http://127.0.0.1:5000/#/experiments/{experiment}/runs/{result['mlflow_run_id']}?{ML_LAYOUT}")
    print(f"  Prefect: http://127.0.0.1:4200/runs/flow-run/{result['prefect_flow_run_id']}")
    print("  Artifacts: .venv/bin/pretrainflow artifacts --config demo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
