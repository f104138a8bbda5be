"""`semsql models list | check | download`: each stage's model, here or not, and an offline copy."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from semsql.cli.common import echo_json
from semsql.cli.errors import UserError
from semsql.embedder.models import inventory, offline_copy
from semsql.stages import NAMES

STAGE = click.Choice(NAMES)
INDENT = " " * 24


@click.group()
def models() -> None:
    """Each stage's model: where it loads from, whether it loads here, an offline copy.

    Each stage's model is SEMSQL_MODEL_<STAGE> (a Hugging Face id, a local folder, a .pt
    file for face_vectors, or `off`), else its default. Hugging Face ids are looked up in
    huggingface_hub's cache (HF_HUB_CACHE, else HF_HOME/hub; HF_HUB_OFFLINE is honoured).

    \b
    Preparing an offline machine:
      semsql models download --to /media/usb/semsql-models    # where the hub is reachable
      # on the offline machine, with the folder at /media/usb/semsql-models:
      . /media/usb/semsql-models/semsql-models.env
      semsql models check
    """


def _progress(as_json: bool) -> bool:
    return sys.stderr.isatty() and not as_json


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(as_json: bool) -> None:
    """Each stage's configured model, where it loads from, whether it is here, its size.

    Nothing is loaded and nothing is fetched: "here" means the files are on this machine
    (`semsql models check` loads them).

    \b
    Examples:
      semsql models list
      SEMSQL_MODEL_CAPTION=/models/blip semsql models list
      semsql models list --json | jq '.[] | select(.present | not) | .stage'
    """
    found = inventory.locate_all()
    if as_json:
        echo_json([location.as_dict() for location in found])
        return
    for location in found:
        click.echo(_location_lines(location))


def _location_lines(location: inventory.Location) -> str:
    if location.model is None:
        setting = location.setting
        why = f"{setting}=off" if location.configured else f"off by default; {setting}=on"
        return f"{location.stage:<13} {'off':<9} ({why})"
    state = "here" if location.present else "missing"
    chosen = location.setting if location.configured else "default"
    size = f"  {_size(location.size_bytes)}" if location.size_bytes is not None else ""
    lines = [f"{location.stage:<13} {state:<9} {location.model}  ({chosen}){size}"]
    where = location.note
    if location.path is not None and location.path != location.model:
        where += f": {location.path}"
    lines.append(INDENT + where)
    if location.fix:
        lines.append(INDENT + f"fix: {location.fix}")
    return "\n".join(lines)


@models.command("check")
@click.argument("stages", nargs=-1, type=STAGE, metavar="[STAGE]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def check(stages: tuple[str, ...], as_json: bool) -> None:
    """Load each configured model (or those of STAGES) on CPU, as the worker does.

    Says, per stage, ok with the load time (and the vector dimensions), or why its model
    could not be loaded and how to fix that. Exit status 1 when any model that is not off
    fails to load.

    \b
    Examples:
      semsql models check
      semsql models check caption clip
      SEMSQL_MODEL_TAGS=off semsql models check --json
    """
    results = []
    show_progress = _progress(as_json)
    for name in stages or NAMES:
        if show_progress:
            click.echo(f"{name}: loading...", err=True)
        for result in inventory.check([name]):
            results.append(result)
            if not as_json:
                click.echo(_checked_lines(result))
    if as_json:
        echo_json([result.as_dict() for result in results])
    failed = [result.stage for result in results if result.status == "failed"]
    if failed:
        raise UserError(f"{len(failed)} model(s) could not be loaded: {', '.join(failed)}")


def _checked_lines(result: inventory.Checked) -> str:
    head = f"{result.stage:<13} {result.status:<9}"
    if result.status == "off":
        return head.rstrip()
    if result.status == "failed":
        return f"{head} {result.model}: {result.reason}\n{INDENT}fix: {result.fix}"
    detail = f"{result.seconds:.1f} s" + (f", {result.dims} dims" if result.dims else "")
    return f"{head} {result.model}  ({detail})"


@models.command("download")
@click.option(
    "--to",
    "folder",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to save the models in (made if missing).",
)
@click.argument("stages", nargs=-1, type=STAGE, metavar="[STAGE]...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def download(folder: Path, stages: tuple[str, ...], as_json: bool) -> None:
    """Save every configured model (or those of STAGES) into one folder, for offline use.

    Run it where the Hugging Face hub is reachable: each model is loaded as the worker loads
    it (fetched into the cache where needed) and saved with save_pretrained, model and
    processor, as FOLDER/<stage>; FaceNet weights are copied to FOLDER/face_vectors.pt. A
    model configured as a local folder is saved the same way. MTCNN and dlib ship in
    packages: nothing to save. A model that cannot be fetched is reported; the others go on.

    Prints the SEMSQL_MODEL_* settings that load the copies; FOLDER/semsql-models.env
    holds those of every copy in FOLDER (this run's and earlier ones'), relative to
    SEMSQL_MODELS_DIR (by default FOLDER): copy FOLDER to the offline machine and load
    that file there. Exit status 1 when any model could not be
    saved.

    \b
    Examples:
      semsql models download --to ~/semsql-models
      semsql models download --to /media/usb/models caption clip
      # on the offline machine, the folder copied to /opt/semsql-models:
      SEMSQL_MODELS_DIR=/opt/semsql-models . /opt/semsql-models/semsql-models.env
      semsql models check
    """
    show_progress = _progress(as_json)

    def progress(line: str) -> None:
        if show_progress:
            click.echo(line, err=True)

    results = list(_saving(folder, stages or NAMES, progress, echo=not as_json))
    lines = offline_copy.export_lines(results)
    settings_file = offline_copy.write_settings(folder)
    if as_json:
        echo_json(
            {
                "to": str(folder.expanduser().resolve()),
                "stages": [saved.as_dict() for saved in results],
                "settings": lines,
                "settings_file": str(settings_file),
            }
        )
    else:
        for line in lines:
            click.echo(line)
        click.echo(f"# these settings are in {settings_file}", err=True)
    failed = [saved.stage for saved in results if saved.status == "failed"]
    if failed:
        raise UserError(f"{len(failed)} model(s) could not be saved: {', '.join(failed)}")


def _saving(
    folder: Path, stages: tuple[str, ...], progress: offline_copy.Progress, echo: bool
) -> list[offline_copy.Saved]:
    results = []
    for saved in offline_copy.download(folder, stages, progress=progress):
        results.append(saved)
        if echo:
            click.echo(_saved_line(saved), err=True)
    return results


def _saved_line(saved: offline_copy.Saved) -> str:
    head = f"{saved.stage:<13} {saved.status:<9}"
    if saved.status == "off":
        return head.rstrip()
    if saved.status == "packaged":
        return f"{head} {saved.model}: ships in a package, nothing to save"
    if saved.status == "builtin":
        return f"{head} {saved.model}: semsql's own code, nothing to save"
    if saved.status == "failed":
        return f"{head} {saved.model}: {saved.reason}\n{INDENT}fix: {saved.fix}"
    detail = f"{_size(saved.size_bytes)}, {saved.seconds or 0:.1f} s"
    return f"{head} {saved.model} -> {saved.path}  ({detail})"


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
