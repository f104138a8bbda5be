"""semsql.duplicates finds connected components of neighbour links with a union-find: the same
groups, rows and order as the transitive closure it replaced (the query of the release before,
semsql.testing.DUPLICATES_BY_CLOSURE), on chains, stars, bridges through another collection,
exact copies and random graphs, and a component of thousands of assets, which the closure held
as n^2 pairs."""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pytest

from semsql.testing import DUPLICATES_BY_CLOSURE

DIMS = 16
MAX_DISTANCE = 0.05
STEP = 0.25  # radians between the links of a chain: cosine distance 0.031, two steps 0.122
SPOKE = 0.3  # a star's leaves: 0.045 from the centre, sin^2 = 0.087 from one another


def unit(*pairs: tuple[int, float]) -> np.ndarray:
    vector = np.zeros(DIMS)
    for axis, value in pairs:
        vector[axis] = value
    return vector


def arc(first: int, second: int, angle: float) -> np.ndarray:
    return unit((first, np.cos(angle)), (second, np.sin(angle)))


def library() -> list[tuple[str, str, str, np.ndarray]]:
    """(uri, collection, content, vector): chains, a star, a bridge through collection b,
    exact and near copies, singletons and a dense cluster, in an order that puts each
    component's least id somewhere in its middle."""
    rows = [(f"/chain/{j}.jpg", "default", f"chain{j}", arc(0, 1, STEP * j)) for j in range(10)]
    rows.append(("/star/centre.jpg", "default", "centre", unit((2, 1.0))))
    for leaf in range(6):
        rows.append(
            (
                f"/star/{leaf}.jpg",
                "default",
                f"leaf{leaf}",
                unit((2, np.cos(SPOKE)), (3 + leaf, np.sin(SPOKE))),
            )
        )
    # Two copies of one file (collections default and b) and a slightly different version.
    rows.append(("/copy/x.jpg", "default", "x", unit((9, 1.0))))
    rows.append(("/copy/x.jpg", "b", "x", unit((9, 1.0))))
    rows.append(("/copy/x-edited.jpg", "b", "x-edited", arc(9, 10, 0.12)))
    # p and r are linked only through q, of collection b.
    rows.append(("/bridge/p.jpg", "default", "p", arc(11, 12, 0.0)))
    rows.append(("/bridge/q.jpg", "b", "q", arc(11, 12, STEP)))
    rows.append(("/bridge/r.jpg", "default", "r", arc(11, 12, 2 * STEP)))
    rows.append(("/alone/1.jpg", "default", "alone1", unit((13, 1.0))))
    rows.append(("/alone/2.jpg", "b", "alone2", unit((13, 0.8), (14, 0.6))))
    rng = np.random.default_rng(3)
    for number in range(8):  # about 0.006 from one another: few neighbours split them
        noise = np.concatenate([rng.normal(0, 0.02, DIMS - 1), [0]])
        rows.append((f"/dense/{number}.jpg", "b", f"dense{number}", unit((15, 1.0)) + noise))
    order = np.random.default_rng(11).permutation(len(rows))
    return [rows[i] for i in order]


def load(conn: psycopg.Connection, rows: list[tuple[str, str, str, np.ndarray]]) -> dict[str, int]:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    ids = {}
    for uri, collection, content, vector in rows:
        ids[f"{collection}:{uri}"] = conn.execute(
            """INSERT INTO semsql.assets (uri, sha256, collection) VALUES (%s, %s, %s)
               RETURNING id""",
            [uri, hashlib.sha256(content.encode()).hexdigest(), collection],
        ).fetchone()[0]
        conn.execute(
            """INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
               VALUES (%s, 'image', 'm', %s)""",
            [ids[f"{collection}:{uri}"], vector.astype(np.float32)],
        )
    conn.execute("SELECT semsql.register_vector_space('image', 'm', %s)", [len(rows[0][3])])
    return ids


def duplicates(conn: psycopg.Connection, **arguments: object) -> list[tuple]:
    types = {"max_distance": "real", "collection": "text", "space": "text", "neighbours": "integer"}
    named = ", ".join(f"{name} => %({name})s::{types[name]}" for name in arguments)
    return conn.execute(f"SELECT * FROM semsql.duplicates({named})", arguments).fetchall()


def closure(
    conn: psycopg.Connection,
    dims: int,
    max_distance: float = 0.05,
    collection: str | None = None,
    neighbours: int = 10,
) -> list[tuple]:
    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(40, neighbours))])
    arguments = {"max_distance": max_distance, "collection": collection, "neighbours": neighbours}
    rows = conn.execute(DUPLICATES_BY_CLOSURE.format(dims=dims), arguments).fetchall()
    conn.execute("SELECT set_config('hnsw.ef_search', '40', true)")
    return rows


def groups(rows: list[tuple], ids: dict[str, int]) -> dict[str, set[str]]:
    """Each group by the key of the asset it is named after: the keys of its members."""
    key = {asset_id: name for name, asset_id in ids.items()}
    found: dict[str, set[str]] = {}
    for group_id, asset_id, *_ in rows:
        found.setdefault(key[group_id], set()).add(key[asset_id])
    return found


def test_groups_are_connected_components_named_by_their_least_id(conn) -> None:
    ids = load(conn, library())
    rows = duplicates(conn, max_distance=MAX_DISTANCE)
    chain = {f"default:/chain/{j}.jpg" for j in range(10)}
    star = {"default:/star/centre.jpg"} | {f"default:/star/{leaf}.jpg" for leaf in range(6)}
    copies = {"default:/copy/x.jpg", "b:/copy/x.jpg", "b:/copy/x-edited.jpg"}
    bridge = {"default:/bridge/p.jpg", "b:/bridge/q.jpg", "default:/bridge/r.jpg"}
    dense = {f"b:/dense/{number}.jpg" for number in range(8)}
    expected = [chain, star, copies, bridge, dense]
    assert sorted(map(sorted, groups(rows, ids).values())) == sorted(map(sorted, expected))
    for name, members in groups(rows, ids).items():
        assert ids[name] == min(ids[member] for member in members)
    # The chain's least id is not at one of its ends: the name travels along it.
    chain_ids = [ids[f"default:/chain/{j}.jpg"] for j in range(10)]
    assert min(chain_ids) not in (chain_ids[0], chain_ids[-1])
    # The group's first asset comes first, at distance 0; then by distance to it, then by id.
    for group_id in {row[0] for row in rows}:
        members = [row for row in rows if row[0] == group_id]
        assert members[0][1] == group_id and members[0][3] == "exact"
        assert members[0][4] == pytest.approx(0, abs=1e-6)
        assert members == sorted(members, key=lambda row: (row[4], row[1]))
    # Exact when the file is the group's first asset's: the two copies of x, unless the edited
    # version is the first (then it alone).
    first = next(row[2] for row in rows if row[1] == min(ids[key] for key in copies))
    kinds = sorted((row[2], row[3]) for row in rows if row[2].startswith("/copy/"))
    same = "exact" if first == "/copy/x.jpg" else "near"
    edited = "near" if first == "/copy/x.jpg" else "exact"
    assert kinds == [("/copy/x-edited.jpg", edited), ("/copy/x.jpg", same), ("/copy/x.jpg", same)]
    # Farther along the chain is farther from its first asset: distance is to it, not a link.
    chain_rows = [row for row in rows if row[1] in chain_ids]
    assert max(row[4] for row in chain_rows) > 0.5
    assert rows == closure(conn, DIMS)


def test_a_collection_keeps_only_its_own_links(conn) -> None:
    ids = load(conn, library())
    rows = duplicates(conn, max_distance=MAX_DISTANCE, collection="default")
    found = groups(rows, ids)
    assert "default:/bridge/r.jpg" not in {m for members in found.values() for m in members}
    assert not any(key.startswith("b:") for members in found.values() for key in members)
    assert len(found) == 2  # the chain and the star; p and r are linked only through q
    assert rows == closure(conn, DIMS, collection="default")
    rows = duplicates(conn, max_distance=MAX_DISTANCE, collection="b")
    assert sorted(map(sorted, groups(rows, ids).values())) == [
        ["b:/copy/x-edited.jpg", "b:/copy/x.jpg"],
        sorted(f"b:/dense/{number}.jpg" for number in range(8)),
    ]
    assert rows == closure(conn, DIMS, collection="b")
    assert duplicates(conn, collection="none such") == []


@pytest.mark.parametrize("neighbours", [1, 2, 3, 10])
@pytest.mark.parametrize("max_distance", [0.0, 0.05, 0.13, 2.0])
def test_the_same_rows_as_the_closure(conn, neighbours: int, max_distance: float) -> None:
    """Few neighbours split the dense cluster and cut chains; a larger distance joins a chain's
    assets two steps apart, and 2 links everything to its nearest."""
    load(conn, library())
    for collection in (None, "default", "b"):
        arguments = {"max_distance": max_distance, "neighbours": neighbours}
        rows = duplicates(conn, collection=collection, **arguments)
        assert rows == closure(conn, DIMS, collection=collection, **arguments)


@pytest.mark.parametrize("seed", [1, 2])
def test_random_graphs_give_the_closure_s_groups(conn, seed: int) -> None:
    """400 random directions in 3 dimensions, each a neighbour of those within 0.012: many
    components, of one to dozens of assets, chains and knots among them."""
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(400, 3))
    rows = [
        (f"/random/{n}.jpg", rng.choice(["default", "b"], p=[0.8, 0.2]), f"random{n}", point)
        for n, point in enumerate(points)
    ]
    other = "b" if rows[0][1] == "default" else "default"
    rows += [("/random/copy.jpg", other, "random0", points[0] * 2)]  # the same file, elsewhere
    load(conn, rows)
    for collection in (None, "default"):
        for neighbours in (1, 4, 10):
            found = duplicates(
                conn, max_distance=0.012, collection=collection, neighbours=neighbours
            )
            assert found == closure(
                conn, 3, max_distance=0.012, collection=collection, neighbours=neighbours
            )
    found = duplicates(conn, max_distance=0.012, neighbours=10)
    sizes = np.unique([row[0] for row in found], return_counts=True)[1]
    assert len(sizes) > 30 and sizes.max() >= 8  # not a trivial graph
    assert "exact" in {row[3] for row in found if row[1] != row[0]}


def load_many(conn: psycopg.Connection, vectors: np.ndarray) -> list[int]:
    conn.execute("UPDATE semsql.stages SET enabled = false")
    count = len(vectors)
    ids = [
        row[0]
        for row in conn.execute(
            """INSERT INTO semsql.assets (uri, sha256)
           SELECT '/many/' || n || '.jpg', encode(sha256(n::text::bytea), 'hex')
           FROM generate_series(1, %s) AS n RETURNING id""",
            [count],
        )
    ]
    ids.sort()
    with conn.cursor().copy(
        "COPY semsql.embeddings (asset_id, space, model, embedding) FROM STDIN"
    ) as copy:
        for asset_id, vector in zip(ids, vectors, strict=True):
            text = "[" + ",".join(f"{v:.6f}" for v in vector) + "]"
            copy.write_row([asset_id, "image", "m", text])
    conn.execute("SELECT semsql.register_vector_space('image', 'm', %s)", [vectors.shape[1]])
    conn.execute("ANALYZE semsql.assets, semsql.embeddings")
    return ids


def test_one_tight_cluster_of_2000_is_one_group(conn) -> None:
    """The shape that made the closure hold n^2 pairs (4 million here): every asset within
    reach of every other."""
    rng = np.random.default_rng(7)
    vectors = np.ones((2000, 8)) + rng.uniform(0, 0.01, (2000, 8))
    ids = load_many(conn, vectors)
    rows = duplicates(conn, max_distance=2.0)
    assert len(rows) == 2000
    assert {row[0] for row in rows} == {ids[0]}
    assert sorted(row[1] for row in rows) == ids
    assert rows[0][1] == ids[0] and rows[0][4] == 0
    assert [row[4] for row in rows] == sorted(row[4] for row in rows)


def test_a_chain_of_2000_is_one_group(conn) -> None:
    """A gradual change (a burst, a pan): each asset within reach of three on either side, so
    the chain is 2000 / 3 links long, as many rounds as label propagation or a recursive
    closure would need, where the union-find needs one pass."""
    frequencies = np.linspace(0.02, 0.04, 16)
    steps = np.arange(2000)[:, None] * frequencies[None, :]
    vectors = np.hstack([np.cos(steps), np.sin(steps)]) / 4
    ids = load_many(conn, vectors)
    # Exact neighbours: HNSW finds a perfectly smooth curve's nearest poorly (its graph on a
    # line keeps few links), which would cut the chain whichever way components are found.
    conn.execute("SET enable_indexscan = off")
    rows = duplicates(conn, max_distance=0.006)
    assert len(rows) == 2000
    assert {row[0] for row in rows} == {ids[0]}
    # Ordered by distance to the first, which grows along the chain's first steps.
    assert [row[1] for row in rows[:20]] == ids[:20]
