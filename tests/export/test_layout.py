"""Publishing an export version: rename aside, rename in, then delete; nothing lost on a crash."""

import os
import stat

import pytest

from export import layout as layout_module
from export.layout import ExportLayout, Staging


def staged_version(root, text):
    lay = ExportLayout(root, "m")
    stage = Staging(lay)
    (stage.path("serving") / "saved_model.pb").write_text(text)
    return lay, stage


def test_overwrite_replaces_the_version(tmp_path):
    lay, stage = staged_version(tmp_path, "old")
    with stage:
        stage.publish(1, ["serving"], overwrite=False)
    lay, stage = staged_version(tmp_path, "new")
    with stage:
        stage.publish(1, ["serving"], overwrite=True)
    assert (lay.version_dir("serving", 1) / "saved_model.pb").read_text() == "new"
    assert not list(tmp_path.glob(".staging*"))


def test_a_failed_rename_in_keeps_the_served_version(tmp_path, monkeypatch):
    lay, stage = staged_version(tmp_path, "old")
    with stage:
        stage.publish(1, ["serving"], overwrite=False)
    lay, stage = staged_version(tmp_path, "new")
    real = os.replace

    def replace(src, dst):
        if str(src).endswith(os.sep + "serving"):  # the new version's rename in
            raise OSError("crash")
        return real(src, dst)

    monkeypatch.setattr(layout_module.os, "replace", replace)
    with pytest.raises(OSError), stage:
        stage.publish(1, ["serving"], overwrite=True)
    assert (lay.version_dir("serving", 1) / "saved_model.pb").read_text() == "old"


def test_the_old_version_is_deleted_only_after_the_new_one_is_in(tmp_path, monkeypatch):
    lay, stage = staged_version(tmp_path, "old")
    with stage:
        stage.publish(1, ["serving"], overwrite=False)
    lay, stage = staged_version(tmp_path, "new")
    seen = []
    monkeypatch.setattr(layout_module.shutil, "rmtree", lambda path, **kw: seen.append(
        (lay.version_dir("serving", 1) / "saved_model.pb").read_text()))
    with stage:
        stage.publish(1, ["serving"], overwrite=True)
    assert seen and all(text == "new" for text in seen)


def test_published_folders_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        lay, stage = staged_version(tmp_path, "x")
        with stage:
            stage.publish(1, ["serving"], overwrite=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(lay.version_dir("serving", 1).stat().st_mode) == 0o755
