"""`semsql people ...`: enrol known faces, name unknown ones, find a face."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg

from semsql import people as api
from semsql.cli.common import (
    INTEGER_MAX,
    ROW_ID,
    FiniteFloatRange,
    connect,
    echo_json,
    fetch_dicts,
    require_schema,
)
from semsql.database import fetch_row, fetch_value

KINDS = click.Choice(["person", "celebrity"])
PICK_HELP = "Which face when an image shows several: N (1 = leftmost) or 'largest'."


@contextlib.contextmanager
def _session() -> Iterator[psycopg.Connection]:
    """A connection to a semsql database, committed at the end. Model, image and SQL errors
    become one-line messages in the `semsql` group (cli/errors.py)."""
    with connect() as conn:
        require_schema(conn)
        yield conn
        conn.commit()


def _face(reader: api.FaceReader, path: Path, pick: str | None) -> api.FoundFace:
    """The face to use in an image; asks which one when several and a person is at the keyboard."""
    try:
        return reader.face(path, pick)
    except api.SeveralFacesError as error:
        if pick is not None or not sys.stdin.isatty():
            raise
        click.echo(f"{path} shows {len(error.faces)} faces:")
        for number, face in enumerate(error.faces, 1):
            click.echo(f"  {number}: {face.describe()}")
        choice = click.prompt("Which one (N or largest)", default="largest")
        return api.choose_face(path, error.faces, choice)


@click.group()
def people() -> None:
    """Enrol people's faces, recognise them in every image, search by face.

    \b
    A face is recognised as the enrolled person with the nearest reference face (of the same
    face-vector model) when the match confidence (1 - cosine distance) reaches that model's
    threshold (`semsql people threshold`). After a switch of SEMSQL_MODEL_FACE_VECTORS the worker
    embeds the faces again; `semsql people refresh` re-makes the references from their photos.
    Every person command has an SQL twin: semsql.enrol_person, enrol_faces, rename_person,
    merge_people, remove_person, people_summary, refresh_face_clusters, name_face_cluster,
    split_face_cluster, assets_with_face, set_face_match_threshold.

    \b
    Examples:
      semsql people add "Grace Hopper" hopper1.jpg hopper2.jpg --kind celebrity
      semsql people enrol-folder ~/people        # ~/people/Grace Hopper/*.jpg, ...
      semsql people clusters                     # unknown faces, grouped
      semsql people name-cluster 12 "Aunt May"
      semsql people find-face someone.jpg        # the images showing that person
      semsql people refresh                      # references, after a face-model switch
    """


@people.command("add")
@click.argument("name")
@click.argument("images", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=KINDS, help="person (default for new people) or celebrity.")
@click.option("--pick", help=PICK_HELP)
@click.option("--face", "face_ids", type=ROW_ID, multiple=True, help="A stored face id to enrol.")
def add(
    name: str,
    images: tuple[Path, ...],
    kind: str | None,
    pick: str | None,
    face_ids: tuple[int, ...],
) -> None:
    """Enrol NAME from the face in each IMAGE (or stored faces, --face).

    Each image must show one face, or say which with --pick. Faces already stored that
    match are recognised at once.

    \b
    Examples:
      semsql people add "Grace Hopper" hopper.jpg --kind celebrity
      semsql people add "Ada" group.jpg --pick 2          # second face from the left
      semsql people add "Ada" --face 812 --face 907       # faces found in the library
    """
    if not images and not face_ids:
        raise click.UsageError("give at least one IMAGE or --face FACE_ID")
    added = matched = 0
    with _session() as conn:
        if images:
            reader = api.face_reader()
            faces = [(path, _face(reader, path, pick)) for path in images]
            done = api.store_references(conn, reader.model_name, name, faces, kind)
            added, matched = added + done.references_added, matched + done.faces_matched
        if face_ids:
            references, recognised = fetch_row(
                conn,
                "SELECT references_added, faces_matched FROM semsql.enrol_faces(%s, %s, %s)",
                [name, list(face_ids), kind],
            )
            added, matched = added + references, matched + recognised
    click.echo(f"{name}: {added} reference face(s) added, {matched} stored face(s) recognised")


@people.command("enrol-folder")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--kind", type=KINDS, help="Kind of every person enrolled.")
@click.option("--pick", help=PICK_HELP + " Without it such images are skipped.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def enrol_folder(root: Path, kind: str | None, pick: str | None, as_json: bool) -> None:
    """Enrol one person per sub-folder of ROOT, named after the folder.

    \b
    Example:
      people/Grace Hopper/1.jpg  people/Grace Hopper/2.jpg  people/Alan Turing/a.png
      semsql people enrol-folder people --kind celebrity
    """
    results = []
    with _session() as conn:
        reader = api.face_reader()
        for done in api.enrol_folder(conn, reader, root, kind=kind, pick=pick):
            results.append(done.__dict__)
            if not as_json:
                click.echo(
                    f"{done.name}: {done.references_added} reference face(s) added, "
                    f"{done.faces_matched} stored face(s) recognised"
                )
                for image, why in done.skipped.items():
                    click.echo(f"  skipped {image}: {why}", err=True)
    if as_json:
        echo_json(results)


@people.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_people(as_json: bool) -> None:
    """List people: reference faces, recognised faces, assets (SQL: semsql.people_summary)."""
    with _session() as conn:
        rows = fetch_dicts(conn, "SELECT * FROM semsql.people_summary ORDER BY lower(name)")
        threshold = _threshold(conn)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("nobody yet: `semsql people add NAME IMAGE` enrols someone")
    for row in rows:
        click.echo(
            f"{row['name']:<30} {row['kind']:<9} {row['reference_faces']:>4} refs "
            f"{row['faces']:>6} faces {row['assets']:>6} assets"
        )
    click.echo(f"(match threshold {threshold:g})", err=True)


@people.command("show")
@click.argument("name")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="How many assets to list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(name: str, limit: int, as_json: bool) -> None:
    """Show a person and the assets they are in, best match first."""
    with _session() as conn:
        person_id = fetch_value(conn, "SELECT semsql.person_by_name(%s)", [name])
        person = fetch_dicts(
            conn, "SELECT * FROM semsql.people_summary WHERE id = %s", [person_id]
        )[0]
        person["appearances"] = fetch_dicts(
            conn,
            """SELECT x.asset_id, a.uri, x.source, x.confidence, x.face_id
               FROM semsql.asset_people_all x JOIN semsql.assets a ON a.id = x.asset_id
               WHERE x.person_id = %s ORDER BY x.confidence DESC, x.asset_id LIMIT %s""",
            [person_id, limit],
        )
    if as_json:
        echo_json(person)
        return
    click.echo(
        f"{person['name']} ({person['kind']}): {person['reference_faces']} reference "
        f"faces, {person['faces']} faces in {person['assets']} assets"
    )
    for seen in person["appearances"]:
        face = f" face {seen['face_id']}" if seen["face_id"] else ""
        click.echo(f"  {seen['confidence']:.3f} {seen['source']:<10} {seen['uri']}{face}")


@people.command("rename")
@click.argument("name")
@click.argument("new_name")
def rename(name: str, new_name: str) -> None:
    """Rename a person (SQL: semsql.rename_person)."""
    with _session() as conn:
        conn.execute("SELECT semsql.rename_person(%s, %s)", [name, new_name])
    click.echo(f"{name} is now {new_name}")


@people.command("merge")
@click.argument("source")
@click.argument("target")
def merge(source: str, target: str) -> None:
    """Merge SOURCE into TARGET: one person, TARGET's name (SQL: semsql.merge_people)."""
    with _session() as conn:
        moved = fetch_value(conn, "SELECT semsql.merge_people(%s, %s)", [source, target])
    click.echo(f"{source} merged into {target} ({moved} faces moved)")


@people.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def remove(name: str, yes: bool) -> None:
    """Remove a person; their faces are unlinked and matched again (SQL: semsql.remove_person)."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Remove {name} and their reference faces?", abort=True)
    with _session() as conn:
        unlinked = fetch_value(conn, "SELECT semsql.remove_person(%s)", [name])
    click.echo(f"{name} removed ({unlinked} faces unlinked)")


def _threshold(conn: psycopg.Connection) -> float:
    """The match threshold of the configured face-vector model."""
    model = api.configured_face_model()
    return float(fetch_value(conn, "SELECT semsql.face_match_threshold(%s::text)", [model]))


@people.command("threshold")
@click.argument("value", type=FiniteFloatRange(0, 1), required=False)
def threshold(value: float | None) -> None:
    """Show, or set, the match threshold of the configured face-vector model
    (SEMSQL_MODEL_FACE_VECTORS); setting it matches every face again.

    \b
    Each model has its own (semsql.face_model_settings): dlib 0.92, FaceNet (vggface2,
    casia-webface, .pt files) 0.4.

    \b
    Examples:
      semsql people threshold          # 0.92 for dlib: up to cosine distance 0.08
      semsql people threshold 0.95     # fewer, surer recognitions
    """
    with _session() as conn:
        if value is None:
            click.echo(f"{_threshold(conn):g}")
            return
        changed = fetch_value(
            conn,
            "SELECT semsql.set_face_match_threshold(%s, %s::text)",
            [value, api.configured_face_model()],
        )
    click.echo(f"match threshold {value:g}: {changed} faces changed person")


@people.command("refresh")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def refresh(as_json: bool) -> None:
    """Make the reference faces of another face-vector model again with the configured one.

    \b
    After SEMSQL_MODEL_FACE_VECTORS changes, the worker embeds every stored face again; a
    reference taken from a stored face follows it by itself, one enrolled from a photo is made
    again here from that photo. A reference whose photo is gone is listed: enrol that person
    again.

    \b
    Example:
      SEMSQL_MODEL_FACE_VECTORS=dlib semsql people refresh
    """
    with _session() as conn:
        done = api.refresh_references(conn, api.face_reader())
    if as_json:
        echo_json(done.__dict__)
        return
    click.echo(
        f"{done.refreshed} reference face(s) made again with {done.model}, "
        f"{done.faces_matched} stored face(s) recognised; {done.waiting} follow their stored "
        "face when the worker embeds it again"
    )
    for reference, why in done.left.items():
        click.echo(f"  not made again: {reference}: {why}", err=True)


@people.command("clusters")
@click.option("--refresh", is_flag=True, help="Group the unrecognised faces again.")
@click.option(
    "--min-similarity", type=FiniteFloatRange(0, 1), help="Link faces at least this alike."
)
@click.option("--min-size", type=click.IntRange(2, INTEGER_MAX), help="Smallest cluster.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def clusters(
    refresh: bool, min_similarity: float | None, min_size: int | None, as_json: bool
) -> None:
    """List clusters of faces that match nobody (made on first use or with --refresh).

    \b
    Examples:
      semsql people clusters --refresh
      semsql people name-cluster 3 "Aunt May"
      semsql people split-cluster 4             # two people in one cluster
    """
    with _session() as conn:
        exists = fetch_value(conn, "SELECT EXISTS (SELECT 1 FROM semsql.face_clusters)")
        if refresh or min_similarity is not None or min_size is not None or not exists:
            conn.execute("SELECT semsql.refresh_face_clusters(%s, %s)", [min_similarity, min_size])
        rows = fetch_dicts(
            conn, "SELECT * FROM semsql.face_cluster_summary ORDER BY faces DESC, cluster_id"
        )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no clusters: every face with a vector is recognised or unlike the others")
    for row in rows:
        click.echo(
            f"cluster {row['cluster_id']}: {row['faces']} faces in {row['assets']} assets, "
            f"faces {', '.join(map(str, row['face_ids']))}  e.g. {row['sample_uris'][0]}"
        )


@people.command("name-cluster")
@click.argument("cluster_id", type=ROW_ID)
@click.argument("name")
@click.option("--kind", type=KINDS, help="person (default for new people) or celebrity.")
def name_cluster(cluster_id: int, name: str, kind: str | None) -> None:
    """Name a cluster: its faces become NAME's (enrolled) and similar faces are recognised."""
    with _session() as conn:
        matched = fetch_value(
            conn,
            "SELECT faces_matched FROM semsql.name_face_cluster(%s, %s, %s)",
            [cluster_id, name, kind],
        )
    click.echo(f"cluster {cluster_id} is {name}: {matched} faces are now theirs")


@people.command("split-cluster")
@click.argument("cluster_id", type=ROW_ID)
@click.option(
    "--min-similarity",
    type=FiniteFloatRange(0, 1),
    help="Re-link its faces at this similarity (default: halfway to 1).",
)
@click.option(
    "--face", "face_ids", type=ROW_ID, multiple=True, help="Move these faces out instead."
)
def split_cluster(cluster_id: int, min_similarity: float | None, face_ids: tuple[int, ...]) -> None:
    """Split a cluster that holds more than one person."""
    with _session() as conn:
        made = conn.execute(
            "SELECT semsql.split_face_cluster(%s, %s, %s)",
            [cluster_id, min_similarity, list(face_ids) or None],
        ).fetchall()
    click.echo(f"cluster {cluster_id} split into {', '.join(str(r[0]) for r in made)}")


@people.command("find-face")
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-k",
    "--limit",
    "k",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many assets.",
)
@click.option("--pick", help=PICK_HELP)
@click.option(
    "--min-similarity",
    type=FiniteFloatRange(0, 1),
    envvar="SEMSQL_FACE_MATCH_THRESHOLD",
    help="Least similarity [default: the match threshold].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def find_face(
    image: Path, k: int, pick: str | None, min_similarity: float | None, as_json: bool
) -> None:
    """The assets that show the person in IMAGE, best face first (SQL: semsql.assets_with_face).

    \b
    Examples:
      semsql people find-face visitor.jpg
      semsql people find-face team.jpg --pick 3 --min-similarity 0.3 --json
    """
    with _session() as conn:
        reader = api.face_reader()
        face = _face(reader, image, pick)
        hits = api.assets_with_face(
            conn, face.vector, reader.model_name, k=k, min_similarity=min_similarity
        )
    if as_json:
        echo_json([hit.as_dict() for hit in hits])
        return
    if not hits:
        click.echo("no stored face is like it")
    for hit in hits:
        who = f"  {hit.person}" if hit.person else ""
        at = f" at {hit.best_at}" if hit.best_at is not None else ""
        click.echo(f"{hit.similarity:.3f}  {hit.uri}{at}  face {hit.face_id}{who}")
