#!/usr/bin/env bash
# The base install, as README.md documents it: `pip install .` with no extras, in a fresh
# virtualenv, gives a `semsql` (and `python -m semsql`) that creates the schema, ingests, and
# searches by vector, against a throwaway embedded server, without torch or transformers.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
# As root the embedded server runs as the user semsql-postgres, which must reach its binaries
# in the virtualenv: mktemp's folder is private.
chmod 755 "$work"
export SEMSQL_HOME="$work/home"
unset SEMSQL_DATABASE_URL VIRTUAL_ENV
stop_server() {
    if [ -x "$work/venv/bin/semsql" ]; then "$work/venv/bin/semsql" db stop >/dev/null || true; fi
    rm -rf "$work"
}
trap stop_server EXIT

step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }
fail() { echo "base install: $1" >&2; exit 1; }

step "pip install . in a fresh virtualenv"
# From a copy of the working tree, so that the build leaves nothing in it.
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - | tar -xf - -C "$work/src"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$work/src"
export PATH="$work/venv/bin:$PATH"
cd "$work"  # `python -m semsql` in the repository would find its semsql/ folder first
[ "$(command -v semsql)" = "$work/venv/bin/semsql" ] || fail "semsql is not the base install's"
python -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ("torch", "transformers")))' \
    || fail "the base install brought torch or transformers"

step "semsql --help, python -m semsql --help"
semsql --help >/dev/null
python -m semsql --help | head -1

step "semsql init (embedded server in $SEMSQL_HOME)"
semsql init

step "semsql ingest"
python - "$work/photos" <<'EOF'
import sys
from pathlib import Path
from PIL import Image

folder = Path(sys.argv[1])
folder.mkdir()
for name, colour in (("red", (200, 30, 30)), ("orange", (220, 120, 30))):
    Image.new("RGB", (64, 48), colour).save(folder / f"{name}.png")
EOF
semsql ingest "$work/photos"

step "search by vector"
# Vectors as a worker would store them (this install has no models to make them).
semsql db psql -v ON_ERROR_STOP=1 -q -c "
    INSERT INTO semsql.embeddings (asset_id, space, model, embedding)
    SELECT id, 'image', 'base-install-check',
           CASE WHEN uri LIKE '%/red.png' THEN '[1,0,0]' ELSE '[0.8,0.6,0]' END::vector
    FROM semsql.assets;
    SELECT semsql.register_vector_space('image', 'base-install-check', 3);"
found="$(semsql db psql -At -c \
    "SELECT uri FROM semsql.search(query_embedding => '[0.9,0.5,0]', k => 1)")"
case "$found" in */orange.png) ;; *) fail "semsql.search(query_embedding) found '$found'" ;; esac
red="$(semsql db psql -At -c "SELECT id FROM semsql.assets WHERE uri LIKE '%/red.png'")"
semsql search --like "$red" --json > "$work/like.json"
python - "$work/like.json" <<'EOF'
import json
import sys

hits = json.load(open(sys.argv[1]))
assert [hit["uri"].rsplit("/", 1)[1] for hit in hits] == ["orange.png"], hits
print("semsql search --like:", hits[0]["uri"], round(hits[0]["score"], 3))
EOF

step "semsql worker says what it needs"
if semsql worker --once 2> "$work/worker.err"; then fail "the worker ran without torch"; fi
grep -q "pip install 'semsql\[models\]'" "$work/worker.err" || { cat "$work/worker.err"; fail "no hint"; }
cat "$work/worker.err"

step "semsql serve says what it needs"
if semsql serve 2> "$work/serve.err"; then fail "semsql serve ran without its extra"; fi
grep -q "pip install 'semsql\[serve\]'" "$work/serve.err" || { cat "$work/serve.err"; fail "no hint"; }
cat "$work/serve.err"

step "semsql db stop"
semsql db stop
echo "base install: ok (${SECONDS}s)"
