import json
import time
from pathlib import Path

import pytest

from tasks.corpus.snapshot import CorpusConfig, build_snapshot
from tests.tasks.corpus.test_snapshot import NO_QUALITY
from tests.tasks.piece_fixtures import Stopped, flip_bytes, stop_after, warnings_of


def _corpus(root: Path) -> CorpusConfig:
    """20 jsonl documents of 40 words: four documents shards of up to 6."""
    root.mkdir(parents=True)
    rows = [{"url": f"https://example.org/doc/{i:03d}",
             "text": " ".join(f"w{(i * 7919 + k * 104729) % 5003}" for k in range(40))} for i in range(20)]
    (root / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return CorpusConfig(local_files=[str(root / "docs.jsonl")], min_words=5, quality=NO_QUALITY,
                        language={"enabled": False}, documents_per_shard=6)


def _all_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    path.write_text("{not json")


# (what damage is done after the write step, to which file, the words the warning must hold)
DAMAGE = {
    "flipped bytes": (flip_bytes, "documents", "checksum differs from the one recorded when it was written"),
    "cut short": (_truncate, "documents", "bytes,"),
    "unreadable record": (_garble, "record", "checksum record"),
    "no record, unreadable": (_truncate, "no record", "cannot be read"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_documents_shard_is_written_again(tmp_path: Path, caplog, damage: str) -> None:
    cfg = _corpus(tmp_path / "src")
    fresh = build_snapshot(cfg, tmp_path / "fresh")
    out = tmp_path / "out"
    with pytest.raises(Stopped):  # killed with every documents shard written, before the report
        build_snapshot(cfg, out, run_step=stop_after("write snapshot"))
    damaged, record = out / "documents-00001.parquet", out / "work" / "written-00001.json"
    assert json.loads(record.read_text()).keys() == {"bytes", "sha256"}
    spoil, target, words = DAMAGE[damage]
    if target == "no record":  # as written by older code, which recorded nothing
        for written in (out / "work").glob("written-*.json"):
            written.unlink()
    spoil(record if target == "record" else damaged)
    intact = out / "documents-00000.parquet"
    before = intact.stat().st_mtime_ns
    time.sleep(0.01)

    stats = build_snapshot(cfg, out)
    [warning] = warnings_of(caplog)
    assert str(damaged) in warning and words in warning and "writing it again" in warning
    assert intact.stat().st_mtime_ns == before  # an undamaged shard is reused, recorded or not
    assert stats.pop("shards_reused") == stats["work_shards"]  # every cleaned shard reused, before and after
    assert stats == {k: v for k, v in fresh.items() if k != "shards_reused"}
    assert _all_files(out) == _all_files(tmp_path / "fresh")  # no record left: work/ is gone
