"""The order in which a sweep builds its artifacts: stage by stage across variants, each distinct artifact once.

Two variants that differ only downstream share the upstream artifacts by id (content addressing): the
corpus of every masking variant is the same folder. Each distinct id is built once, with the config of
the first variant that reads it (any of them gives that id). An artifact is finished when its manifest is
in the store (ArtifactStore.exists, as run_stage decides a cache hit), so a sweep restarted after a kill
skips what is finished, and run_stage resumes a killed build from its staging folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.artifacts import ArtifactStore
from tasks.config import PipelineConfig
from tasks.stages import STAGES
from tasks.sweep.plan import SweepPlan


@dataclass(frozen=True)
class Build:
    """One distinct artifact of a sweep: which stage builds it, with which config, and who reads it."""

    stage: str
    artifact_id: str
    config: PipelineConfig  # the first reading variant's config: building stage with it gives artifact_id
    variants: tuple[str, ...]  # names of every variant whose pipeline has this artifact


def build_order(plan: SweepPlan) -> list[Build]:
    """Every distinct artifact once, in pipeline stage order and, within a stage, in variant order.

    A stage's builds read only earlier stages' artifacts, so they are independent of each other: they may
    run at the same time (pretraining: up to sweep.max_parallel) once the previous stage is done.
    """
    builds = []
    for stage in STAGES:  # dict order is pipeline order
        readers: dict[str, list[str]] = {}
        configs: dict[str, PipelineConfig] = {}
        for variant in plan.variants:
            artifact_id = variant.ids[stage]
            readers.setdefault(artifact_id, []).append(variant.name)
            configs.setdefault(artifact_id, variant.config)
        builds += [Build(stage, i, configs[i], tuple(names)) for i, names in readers.items()]
    return builds


def remaining_builds(plan: SweepPlan, store: ArtifactStore | None = None) -> list[Build]:
    """The builds whose artifact is not finished in the store now: what a (re)started sweep still has to do."""
    store = store or ArtifactStore(plan.data_root)
    return [b for b in build_order(plan) if not store.exists(b.stage, b.artifact_id)]


def by_stage(builds: list[Build]) -> dict[str, list[Build]]:
    """Builds grouped per stage, in pipeline order (stages with nothing to build are left out)."""
    grouped: dict[str, list[Build]] = {}
    for build in builds:
        grouped.setdefault(build.stage, []).append(build)
    return grouped
