"""`semsql models download --to` with hostile folders: what its settings file overwrites."""

from __future__ import annotations

import subprocess
from pathlib import Path

from semsql.embedder.models import offline_copy


def test_the_settings_file_replaces_a_link_and_never_writes_through_it(tmp_path: Path) -> None:
    # A folder handed over (a USB stick, a shared mount) whose semsql-models.env is a link to
    # one of the user's own files.
    victim = tmp_path / "bashrc"
    victim.write_text("alias ll='ls -l'\n")
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / offline_copy.SETTINGS_FILE).symlink_to(victim)
    (folder / "caption").mkdir()

    written = offline_copy.write_settings(folder)

    assert victim.read_text() == "alias ll='ls -l'\n"
    assert not written.is_symlink()
    assert "SEMSQL_MODEL_CAPTION" in written.read_text()


def test_a_folder_name_with_a_newline_runs_nothing_when_the_file_is_sourced(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    folder = tmp_path / "models\ntouch ran\n"
    folder.mkdir()
    (folder / "caption").mkdir()

    written = offline_copy.write_settings(folder)
    done = subprocess.run(
        ["bash", "-c", '. "$1" && printf %s "$SEMSQL_MODEL_CAPTION"', "-", str(written)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )

    assert not marker.exists()
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{folder}/caption"
