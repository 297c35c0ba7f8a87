import json
from pathlib import Path

from tasks.pieces import (
    DIGESTS_DIRNAME,
    forget_digests,
    piece_damage,
    piece_record,
    record_piece,
    reusable_piece,
)
from tests.tasks.piece_fixtures import flip_bytes, warnings_of


def _piece(folder: Path) -> Path:
    path = folder / "part-00000.bin"
    path.write_bytes(bytes(range(256)) * 64)
    return path


def test_a_recorded_piece_is_reused_until_its_bytes_change(tmp_path: Path, caplog) -> None:
    path = _piece(tmp_path)
    record_piece(path)
    assert json.loads((tmp_path / DIGESTS_DIRNAME / "part-00000.bin.json").read_text()) == piece_record(path)
    assert reusable_piece(path) and warnings_of(caplog) == []

    flip_bytes(path)
    assert not reusable_piece(path)
    [warning] = warnings_of(caplog)
    assert str(path) in warning and "checksum differs from the one recorded when it was written" in warning
    assert not path.exists() and not (tmp_path / DIGESTS_DIRNAME / "part-00000.bin.json").exists()


def test_what_is_wrong_is_named(tmp_path: Path) -> None:
    path = _piece(tmp_path)
    record = piece_record(path)
    assert piece_damage(path, record) is None
    assert piece_damage(path, None) == "no checksum was recorded for it"
    path.write_bytes(path.read_bytes()[:100])
    assert piece_damage(path, record) == f"it holds 100 bytes, {record['bytes']} when it was written"
    path.unlink()
    assert piece_damage(path, record) == "it is missing"


def test_a_piece_without_a_record_is_reused_unverified_and_a_broken_record_is_damage(tmp_path: Path, caplog) -> None:
    older = _piece(tmp_path)  # written by code that recorded nothing
    assert reusable_piece(older) and warnings_of(caplog) == []
    record_piece(older)
    (tmp_path / DIGESTS_DIRNAME / "part-00000.bin.json").write_text("{not json")
    assert not reusable_piece(older)
    [warning] = warnings_of(caplog)
    assert str(older) in warning and "cannot be read" in warning


def test_forget_digests_leaves_only_the_pieces(tmp_path: Path) -> None:
    path = _piece(tmp_path)
    record_piece(path)
    forget_digests(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert reusable_piece(path)
