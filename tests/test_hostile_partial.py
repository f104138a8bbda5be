"""An analyst cannot park, take back or steal a stage's tasks through partial enrichment."""

from __future__ import annotations

import psycopg
import pytest

CALLS = [
    "SELECT semsql.report_unavailable_stage('evil', 'caption', 'parked', NULL)",
    "SELECT semsql.resume_stages(ARRAY['caption'])",
    "INSERT INTO semsql.unavailable_stages (stage, reason, reported_by) "
    "VALUES ('caption', 'parked', 'evil')",
    "UPDATE semsql.tasks SET status = 'waiting'",
    "SELECT semsql.register_worker('evil', 'h', 1, 'cpu', '{caption}', '{}', '{}')",
]


@pytest.mark.parametrize("call", CALLS)
def test_an_analyst_cannot_change_which_stages_wait(login_as, db, call: str) -> None:
    db.execute("SELECT semsql.report_unavailable_stage('w', 'tags', 'no weights', 'fix')")
    analyst = login_as("semsql_analyst")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute(call)
    assert db.execute("SELECT stage FROM semsql.unavailable_stages").fetchall() == [("tags",)]
    assert analyst.execute("SELECT stage FROM semsql.unavailable_stages").fetchall() == [("tags",)]
