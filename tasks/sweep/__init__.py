"""Ablation sweeps: one base config crossed with axes of overrides (or named variants) and seeds.

plan.py validates every variant's config before anything runs and resolves its artifact ids
(SweepConfig, plan_sweep); build_order.py lists the distinct artifacts to build, each once, stage by
stage; report.py turns the variants' evaluate and pretrain artifacts into the comparison (markdown and a
PNG). flows/sweep.py runs the builds with the stage flows and tracks the sweep in MLflow.

Must not import MLflow or Prefect. From the rest of tasks/ it uses tasks.config (loading presets with
overrides), tasks.stages (artifact ids) and tasks.artifacts (what is already built).
"""
