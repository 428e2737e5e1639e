import pytest

from fangprune.io import atomic_path, read_json, write_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "a.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_directory_write_keeps_previous(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "weights").write_text("v2-partial")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_json_roundtrip(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2], "b": 0.5})
    assert read_json(tmp_path / "x.json") == {"a": [1, 2], "b": 0.5}


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_outputs_get_the_users_normal_permissions(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        write_json(tmp_path / "x.json", {"a": 1})
        with atomic_path(tmp_path / "ckpt", directory=True) as tmp:
            (tmp / "weights").write_text("w")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "ckpt").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "ckpt" / "weights").stat().st_mode) == 0o666 & ~umask
