-- People: enrolment of known faces, recognition of every stored face, clusters of the faces
-- that match nobody, and search by face.
--
-- A face is recognised as the person of its nearest reference vector (semsql.person_faces, of
-- the same face-vector model) when their match confidence, 1 - cosine distance clamped to
-- [0, 1], reaches the match threshold of that model (semsql.face_model_settings, else
-- recognition_settings.match_threshold). Vectors of different models are never compared: every
-- lookup below filters on faces.embedding_model / person_faces.model. A face whose person_id
-- is set with a NULL match_confidence was assigned by a user (a named cluster, an enrolled
-- face): recognition leaves it alone. Enrolment and the recognition of newly written faces
-- take turns on one lock (semsql.take_mutex), so that a face written while someone is enrolled
-- is matched by one of them.

-- Confidence, threshold, lock ----------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.face_match_confidence(distance double precision) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT greatest(0, least(1, 1 - distance))::real;
$$;
COMMENT ON FUNCTION semsql.face_match_confidence(double precision) IS
    'Match confidence of a face and a reference vector at this cosine distance: 1 - distance '
    '(their cosine similarity) clamped to [0, 1]. Stored in faces.match_confidence.';

CREATE OR REPLACE FUNCTION semsql.face_match_threshold() RETURNS real
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT match_threshold FROM recognition_settings;
$$;
COMMENT ON FUNCTION semsql.face_match_threshold() IS
    'The least match confidence at which a face is recognised as its nearest enrolled person, '
    'for models without their own (semsql.face_model_settings).';

CREATE OR REPLACE FUNCTION semsql.face_match_threshold(p_model text) RETURNS real
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce((SELECT s.match_threshold FROM face_model_settings s WHERE s.model = p_model),
                    (SELECT g.match_threshold FROM recognition_settings g));
$$;
COMMENT ON FUNCTION semsql.face_match_threshold(text) IS
    'The match threshold of the faces of this face-vector model: its own '
    '(semsql.face_model_settings), else recognition_settings.match_threshold.';

CREATE OR REPLACE FUNCTION semsql.face_cluster_threshold(p_model text) RETURNS real
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce((SELECT s.cluster_threshold FROM face_model_settings s WHERE s.model = p_model),
                    (SELECT g.cluster_threshold FROM recognition_settings g));
$$;
COMMENT ON FUNCTION semsql.face_cluster_threshold(text) IS
    'The least similarity at which two unrecognised faces of this model are linked into a '
    'cluster: the model''s own (semsql.face_model_settings), else recognition_settings''.';

CREATE OR REPLACE FUNCTION semsql.lock_recognition(p_exclusive boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    PERFORM take_mutex('recognition', p_exclusive);
END
$$;
COMMENT ON FUNCTION semsql.lock_recognition(boolean) IS
    'Until commit: exclusive for changes to the references (enrolment, removal), shared for '
    'recognising newly written faces, so that neither misses what the other commits.';

-- People by name ----------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.person_by_name(p_name text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    found_id bigint;
    close_names text;
BEGIN
    SELECT id INTO found_id FROM people WHERE lower(name) = lower(btrim(p_name));
    IF found_id IS NULL THEN
        SELECT string_agg(name, ', ' ORDER BY score DESC) INTO close_names
        FROM (SELECT name, similarity(name, p_name) AS score FROM people
              ORDER BY 2 DESC LIMIT 3) AS close
        WHERE score > 0.2;
        RAISE EXCEPTION 'no person named "%"', p_name
            USING ERRCODE = 'no_data_found',
                  HINT = coalesce('did you mean ' || close_names || '?',
                                  'semsql.people_summary lists the people');
    END IF;
    RETURN found_id;
END
$$;
COMMENT ON FUNCTION semsql.person_by_name(text) IS
    'The id of the person with this name (case-insensitive); raises no_data_found, with close names as a hint.';

CREATE OR REPLACE FUNCTION semsql.person_name(p_name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF nullif(btrim(p_name), '') IS NULL THEN
        RAISE EXCEPTION 'a person needs a name' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- As semsql.limits.MAX_NAME_CHARS: the longest real names are about 100 characters, and
    -- the name's B-tree index holds at most about 2,700 bytes.
    IF length(btrim(p_name)) > 200 THEN
        RAISE EXCEPTION 'a person''s name has at most 200 characters; this one has %',
            length(btrim(p_name))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN btrim(p_name);
END
$$;
COMMENT ON FUNCTION semsql.person_name(text) IS
    'A name as stored for a person (trimmed); raises for an empty one or one over 200 characters.';

CREATE OR REPLACE FUNCTION semsql.add_person(p_name text, p_kind text DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    person bigint;
BEGIN
    p_name := person_name(p_name);
    INSERT INTO people (name, kind) VALUES (btrim(p_name), coalesce(p_kind, 'person'))
    ON CONFLICT ((lower(name))) DO NOTHING;
    SELECT id INTO person FROM people WHERE lower(name) = lower(btrim(p_name));
    IF p_kind IS NOT NULL THEN
        UPDATE people SET kind = p_kind WHERE id = person AND kind <> p_kind;
    END IF;
    RETURN person;
END
$$;
COMMENT ON FUNCTION semsql.add_person(text, text) IS
    'The id of the person with this name, created when new; p_kind (person or celebrity) is set when given.';

-- Recognition ---------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.nearest_person(p_embedding vector, p_model text)
RETURNS TABLE (person_id bigint, distance double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
AS $$
    SELECT pf.person_id, pf.embedding <=> p_embedding
    FROM person_faces pf
    WHERE pf.model = p_model
    ORDER BY pf.embedding <=> p_embedding
    LIMIT 1;
$$;
COMMENT ON FUNCTION semsql.nearest_person(vector, text) IS
    'The enrolled person with the reference vector nearest to this face vector of this model, '
    'and the cosine distance (whatever the threshold).';

CREATE OR REPLACE FUNCTION semsql.nearest_person_for_face(
    p_face_id bigint, p_embedding vector, p_model text
) RETURNS TABLE (person_id bigint, distance double precision)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
AS $$
    SELECT pf.person_id, pf.embedding <=> p_embedding
    FROM person_faces pf
    WHERE pf.model = p_model
      AND NOT EXISTS (SELECT 1 FROM face_rejections r
                      WHERE r.face_id = p_face_id AND r.person_id = pf.person_id)
    ORDER BY pf.embedding <=> p_embedding
    LIMIT 1;
$$;
COMMENT ON FUNCTION semsql.nearest_person_for_face(bigint, vector, text) IS
    'As nearest_person, leaving out the people this face was said not to be '
    '(semsql.face_rejections).';

CREATE OR REPLACE FUNCTION semsql.recognise_face() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    best record;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.embedding IS NOT DISTINCT FROM OLD.embedding
       AND NEW.embedding_model IS NOT DISTINCT FROM OLD.embedding_model THEN
        IF NEW.person_id IS NULL AND OLD.person_id IS NOT NULL
           AND NEW.match_confidence IS NOT DISTINCT FROM OLD.match_confidence THEN
            NEW.match_confidence := NULL;  -- unlinked (its person was deleted): no confidence left
        END IF;
        RETURN NEW;
    END IF;
    -- Kept: a person given with the new row, or set by this very statement, or assigned by hand.
    IF (TG_OP = 'INSERT' AND NEW.person_id IS NOT NULL)
       OR (TG_OP = 'UPDATE' AND (NEW.person_id IS DISTINCT FROM OLD.person_id
                                 OR (NEW.person_id IS NOT NULL AND NEW.match_confidence IS NULL)))
    THEN
        RETURN NEW;
    END IF;
    NEW.person_id := NULL;
    NEW.match_confidence := NULL;
    IF NEW.embedding IS NOT NULL THEN
        PERFORM lock_recognition(false);
        SELECT n.person_id, face_match_confidence(n.distance) AS confidence INTO best
        FROM nearest_person_for_face(NEW.id, NEW.embedding, NEW.embedding_model) AS n;
        IF best.confidence >= face_match_threshold(NEW.embedding_model) THEN
            NEW.person_id := best.person_id;
            NEW.match_confidence := best.confidence;
        END IF;
    END IF;
    -- The person it matched is a fact of the row being written: the statement's stale marks
    -- (semsql.mark_stale) take it to the asset's document and text vector.
    RETURN NEW;
END
$$;
COMMENT ON FUNCTION semsql.recognise_face() IS
    'Trigger: recognises a face when its vector is written (nearest reference within the threshold, '
    'of a person it was not said not to be); clears the confidence of a face whose person is unset.';

CREATE OR REPLACE TRIGGER faces_recognise
    BEFORE INSERT OR UPDATE OF embedding, embedding_model, person_id ON semsql.faces
    FOR EACH ROW EXECUTE FUNCTION semsql.recognise_face();

-- Switching the face-vector model ------------------------------------------------------------------
--
-- A worker that starts with another face_vectors model than the stored faces were made with
-- queues their face_vectors tasks again (semsql.requeue_faces_of_other_models, called from
-- embedder/startup.py). Until a face is re-embedded it keeps its old vector, and is compared
-- only with references of its old model. References taken from a stored face (face_id) follow
-- that face's new vector (the trigger below); references from enrolment photos cannot be
-- re-made in SQL: `semsql people refresh` embeds their photos again with the new model.

CREATE OR REPLACE FUNCTION semsql.requeue_faces_of_other_models(p_model text) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT requeue_tasks(ARRAY(SELECT DISTINCT f.asset_id FROM faces f
                               WHERE f.embedding IS NOT NULL
                                 AND f.embedding_model IS DISTINCT FROM p_model),
                         ARRAY['face_vectors']);
$$;
COMMENT ON FUNCTION semsql.requeue_faces_of_other_models(text) IS
    'Queues face_vectors again for every asset with a face vector of another model than p_model '
    '(the model a worker starts with); returns how many assets.';

CREATE OR REPLACE FUNCTION semsql.follow_face_reference() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    refreshed bigint[];
BEGIN
    WITH changed AS (
        UPDATE person_faces pf SET embedding = NEW.embedding, model = NEW.embedding_model
        WHERE pf.face_id = NEW.id
          AND (pf.model IS DISTINCT FROM NEW.embedding_model OR pf.embedding <> NEW.embedding)
        RETURNING pf.id)
    SELECT array_agg(id) INTO refreshed FROM changed;
    IF refreshed IS NOT NULL THEN
        -- Faces re-embedded before this one were compared without this reference.
        PERFORM match_references(refreshed);
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION semsql.follow_face_reference() IS
    'Trigger: a reference vector taken from a stored face (person_faces.face_id) takes that '
    'face''s new vector and model when it is embedded again, and recognises the faces it wins.';

CREATE OR REPLACE TRIGGER faces_follow_reference
    AFTER UPDATE OF embedding, embedding_model ON semsql.faces
    FOR EACH ROW
    WHEN (NEW.embedding IS NOT NULL AND NEW.embedding_model IS NOT NULL
          AND (OLD.embedding_model IS DISTINCT FROM NEW.embedding_model
               OR OLD.embedding IS DISTINCT FROM NEW.embedding))
    EXECUTE FUNCTION semsql.follow_face_reference();

CREATE OR REPLACE FUNCTION semsql.faces_near(
    p_embedding vector, p_model text, p_max_distance double precision
) RETURNS TABLE (face_id bigint, distance double precision)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
SET hnsw.max_scan_tuples = 1000000
SET hnsw.ef_search = 100
SET enable_seqscan = off
AS $$
DECLARE
    near record;
BEGIN
    PERFORM check_real('p_max_distance', p_max_distance::real, 0, 2, true);
    -- Walks the faces HNSW index outwards and stops at the first face beyond the distance,
    -- which a WHERE on the distance cannot do. Without enable_seqscan = off the planner sorts
    -- the whole table for a query that has no small LIMIT.
    FOR near IN
        SELECT f.id, f.embedding_model, f.embedding <=> p_embedding AS d
        FROM faces f
        ORDER BY f.embedding <=> p_embedding
        LIMIT 1000000
    LOOP
        EXIT WHEN near.d > p_max_distance;
        CONTINUE WHEN near.embedding_model IS DISTINCT FROM p_model;
        face_id := near.id;
        distance := near.d;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION semsql.faces_near(vector, text, double precision) IS
    'Stored faces of this model within this cosine distance of a vector, through the faces HNSW index.';

CREATE OR REPLACE FUNCTION semsql.store_face_matches(
    p_face_ids bigint[], p_person_ids bigint[], p_confidences real[]
) RETURNS integer
LANGUAGE sql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    -- Two updates, so that only faces that change person mark their asset stale (whose
    -- rebuild may queue its text vector again).
    WITH given AS MATERIALIZED (
        SELECT * FROM unnest(p_face_ids, p_person_ids, p_confidences)
                      AS g(face_id, person_id, confidence)),
    rescored AS (
        UPDATE faces f SET match_confidence = g.confidence
        FROM given g
        WHERE f.id = g.face_id AND f.person_id IS NOT DISTINCT FROM g.person_id
          AND f.match_confidence IS DISTINCT FROM g.confidence),
    moved AS (
        UPDATE faces f SET person_id = g.person_id, match_confidence = g.confidence
        FROM given g
        WHERE f.id = g.face_id AND f.person_id IS DISTINCT FROM g.person_id
        RETURNING f.id)
    SELECT count(*)::integer FROM moved;
$$;
COMMENT ON FUNCTION semsql.store_face_matches(bigint[], bigint[], real[]) IS
    'Stores recognition results (person NULL: nobody) for these faces; returns how many changed person.';

CREATE OR REPLACE FUNCTION semsql.match_faces(p_face_ids bigint[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
AS $$
DECLARE
    ids bigint[];
    persons bigint[];
    confidences real[];
BEGIN
    PERFORM lock_recognition(true);
    IF p_face_ids IS NULL THEN
        -- Every face: each reference walks the faces HNSW index out to its model's threshold
        -- (a few ms each); a face that no reference reaches matches nobody.
        SELECT array_agg(f.id), array_agg(c.person_id), array_agg(c.confidence)
        INTO ids, persons, confidences
        FROM faces f
        LEFT JOIN (
            SELECT DISTINCT ON (n.face_id)
                   n.face_id, pf.person_id, face_match_confidence(n.distance) AS confidence
            FROM (SELECT r.*, face_match_threshold(r.model) AS threshold
                  FROM person_faces r) AS pf
            CROSS JOIN LATERAL faces_near(pf.embedding, pf.model, 1 - pf.threshold) AS n
            WHERE face_match_confidence(n.distance) >= pf.threshold
            AND NOT EXISTS (SELECT 1 FROM face_rejections x
                            WHERE x.face_id = n.face_id AND x.person_id = pf.person_id)
            ORDER BY n.face_id, n.distance) AS c
            ON c.face_id = f.id
        WHERE f.embedding IS NOT NULL AND (f.person_id IS NULL OR f.match_confidence IS NOT NULL);
    ELSE
        -- A few faces: each looks up its nearest reference in the HNSW index of person_faces.
        SELECT array_agg(f.id),
               array_agg(CASE WHEN n.confidence >= t.threshold THEN n.person_id END),
               array_agg(CASE WHEN n.confidence >= t.threshold THEN n.confidence END)
        INTO ids, persons, confidences
        FROM faces f
        CROSS JOIN LATERAL (SELECT face_match_threshold(f.embedding_model) AS threshold) AS t
        LEFT JOIN LATERAL (
            SELECT pf.person_id, face_match_confidence(pf.embedding <=> f.embedding) AS confidence
            FROM person_faces pf
            WHERE pf.model = f.embedding_model
              AND NOT EXISTS (SELECT 1 FROM face_rejections x
                              WHERE x.face_id = f.id AND x.person_id = pf.person_id)
            ORDER BY pf.embedding <=> f.embedding
            LIMIT 1) AS n ON true
        WHERE f.id IN (SELECT unnest(p_face_ids))
          AND f.embedding IS NOT NULL AND (f.person_id IS NULL OR f.match_confidence IS NOT NULL);
    END IF;
    RETURN coalesce(store_face_matches(ids, persons, confidences), 0);
END
$$;
COMMENT ON FUNCTION semsql.match_faces(bigint[]) IS
    'Recognises these faces again (every face when NULL) against every reference vector, set-based '
    'over the HNSW indexes; faces assigned by hand are kept, and no face is matched to a person it '
    'was said not to be (semsql.face_rejections). Returns how many changed person.';

CREATE OR REPLACE FUNCTION semsql.match_references(p_reference_ids bigint[]) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    ids bigint[];
    persons bigint[];
    confidences real[];
BEGIN
    PERFORM lock_recognition(true);
    -- New references can only win faces: those within their model's threshold of one of them
    -- that match nobody yet, or a farther reference.
    SELECT array_agg(c.face_id), array_agg(c.person_id), array_agg(c.confidence)
    INTO ids, persons, confidences
    FROM (SELECT DISTINCT ON (n.face_id)
                 n.face_id, pf.person_id, face_match_confidence(n.distance) AS confidence
          FROM (SELECT r.*, face_match_threshold(r.model) AS threshold
                FROM person_faces r WHERE r.id IN (SELECT unnest(p_reference_ids))) AS pf
          CROSS JOIN LATERAL faces_near(pf.embedding, pf.model, 1 - pf.threshold) AS n
          WHERE face_match_confidence(n.distance) >= pf.threshold
            AND NOT EXISTS (SELECT 1 FROM face_rejections x
                            WHERE x.face_id = n.face_id AND x.person_id = pf.person_id)
          ORDER BY n.face_id, n.distance) AS c
    JOIN faces f ON f.id = c.face_id
    WHERE f.person_id IS NULL OR c.confidence > f.match_confidence;
    RETURN coalesce(store_face_matches(ids, persons, confidences), 0);
END
$$;
COMMENT ON FUNCTION semsql.match_references(bigint[]) IS
    'After reference vectors were added: recognises the faces they win (within the threshold and '
    'nearer than their current match), found through the faces HNSW index. Returns how many changed person.';

CREATE OR REPLACE FUNCTION semsql.set_face_match_threshold(p_threshold double precision) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF p_threshold IS NULL OR p_threshold NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'the match threshold is a confidence between 0 and 1, not %', p_threshold
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM lock_recognition(true);
    UPDATE recognition_settings SET match_threshold = p_threshold, updated_at = now()
    WHERE match_threshold <> p_threshold::real;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    RETURN match_faces();
END
$$;
COMMENT ON FUNCTION semsql.set_face_match_threshold(double precision) IS
    'Sets the least match confidence for recognition of the models without a threshold of their '
    'own (semsql.face_model_settings) and matches every face again; returns how many changed person.';

CREATE OR REPLACE FUNCTION semsql.set_face_match_threshold(
    p_threshold double precision, p_model text
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF p_model IS NULL THEN
        RETURN set_face_match_threshold(p_threshold);
    END IF;
    IF p_threshold IS NULL OR p_threshold NOT BETWEEN 0 AND 1 THEN
        RAISE EXCEPTION 'the match threshold is a confidence between 0 and 1, not %', p_threshold
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM lock_recognition(true);
    IF face_match_threshold(p_model) = p_threshold::real THEN
        RETURN 0;
    END IF;
    INSERT INTO face_model_settings AS s (model, match_threshold, cluster_threshold)
    VALUES (p_model, p_threshold, face_cluster_threshold(p_model))
    ON CONFLICT (model) DO UPDATE SET match_threshold = EXCLUDED.match_threshold,
                                      updated_at = now();
    RETURN match_faces();
END
$$;
COMMENT ON FUNCTION semsql.set_face_match_threshold(double precision, text) IS
    'Sets the match threshold of one face-vector model (semsql.face_model_settings; NULL: of '
    'the models without their own) and matches every face again; returns how many changed person.';

-- Enrolment -----------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.enrol_person(
    p_name text, p_embeddings vector[], p_model text,
    p_source_uris text[] DEFAULT NULL, p_boxes real[] DEFAULT NULL, p_kind text DEFAULT NULL
) RETURNS TABLE (person_id bigint, references_added integer, faces_matched integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    person bigint;
    added bigint[];
BEGIN
    IF coalesce(cardinality(p_embeddings), 0) = 0 OR nullif(btrim(p_model), '') IS NULL THEN
        RAISE EXCEPTION 'enrolling "%" needs face vectors and the name of their model', p_name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM lock_recognition(true);
    person := add_person(p_name, p_kind);
    -- p_boxes is n x 4 (x0, y0, x1, y1 in pixels); a vector this person has already is skipped.
    WITH given AS (
        SELECT e.embedding::vector(512) AS embedding, p_source_uris[e.n] AS source_uri,
               CASE WHEN p_boxes IS NOT NULL
                    THEN ARRAY(SELECT unnest(p_boxes[e.n:e.n][1:4])) END AS box
        FROM unnest(p_embeddings) WITH ORDINALITY AS e(embedding, n)),
    inserted AS (
        INSERT INTO person_faces (person_id, embedding, model, source_uri, box)
        SELECT DISTINCT ON (g.embedding) person, g.embedding, p_model, g.source_uri, g.box
        FROM given g
        WHERE NOT EXISTS (SELECT 1 FROM person_faces pf
                          WHERE pf.person_id = person AND pf.model = p_model
                            AND pf.embedding = g.embedding)
        RETURNING id)
    SELECT array_agg(id) INTO added FROM inserted;
    person_id := person;
    references_added := coalesce(cardinality(added), 0);
    faces_matched := CASE WHEN added IS NULL THEN 0 ELSE match_references(added) END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION semsql.enrol_person(text, vector[], text, text[], real[], text) IS
    'Enrols a person (created when new) with reference face vectors of a model, e.g. from '
    'photos (source_uris, boxes n x 4), and recognises the stored faces they match.';

CREATE OR REPLACE FUNCTION semsql.enrol_faces(
    p_name text, p_face_ids bigint[], p_kind text DEFAULT NULL
) RETURNS TABLE (person_id bigint, references_added integer, faces_matched integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    person bigint;
    missing bigint[];
    previous bigint[];
    added bigint[];
    assigned integer;
BEGIN
    SELECT array_agg(w.id) INTO missing FROM unnest(p_face_ids) AS w(id)
    WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.id = w.id AND f.embedding IS NOT NULL
                                                AND f.embedding_model IS NOT NULL);
    IF missing IS NOT NULL OR coalesce(cardinality(p_face_ids), 0) = 0 THEN
        RAISE EXCEPTION 'no stored face with a vector has the id(s) %', coalesce(missing, '{}')
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM lock_recognition(true);
    person := add_person(p_name, p_kind);
    -- Named as this person by hand: what was said against it before no longer holds.
    DELETE FROM face_rejections r WHERE r.face_id = ANY (p_face_ids) AND r.person_id = person;
    -- Faces that were references of someone else move to this person; that person's
    -- recognised faces are matched again below.
    SELECT array_agg(DISTINCT pf.person_id) INTO previous FROM person_faces pf
    WHERE pf.face_id = ANY (p_face_ids) AND pf.person_id <> person;
    WITH upserted AS (
        INSERT INTO person_faces AS pf (person_id, embedding, model, face_id)
        SELECT person, f.embedding, f.embedding_model, f.id FROM faces f WHERE f.id = ANY (p_face_ids)
        ON CONFLICT (face_id) DO UPDATE
            SET person_id = EXCLUDED.person_id, embedding = EXCLUDED.embedding,
                model = EXCLUDED.model
            WHERE (pf.person_id, pf.model) IS DISTINCT FROM (EXCLUDED.person_id, EXCLUDED.model)
               OR pf.embedding <> EXCLUDED.embedding
        RETURNING id)
    SELECT array_agg(id) INTO added FROM upserted;
    -- Assigned by hand: a NULL confidence, which recognition leaves alone.
    UPDATE faces f SET person_id = person, match_confidence = NULL
    WHERE f.id = ANY (p_face_ids) AND f.person_id IS DISTINCT FROM person;
    GET DIAGNOSTICS assigned = ROW_COUNT;
    UPDATE faces f SET match_confidence = NULL
    WHERE f.id = ANY (p_face_ids) AND f.match_confidence IS NOT NULL;
    DELETE FROM face_cluster_members m WHERE m.face_id = ANY (p_face_ids);
    IF previous IS NOT NULL THEN
        PERFORM match_faces(ARRAY(SELECT f.id FROM faces f WHERE f.person_id = ANY (previous)
                                                           AND f.match_confidence IS NOT NULL));
    END IF;
    person_id := person;
    references_added := coalesce(cardinality(added), 0);
    faces_matched := assigned + CASE WHEN added IS NULL THEN 0 ELSE match_references(added) END;
    RETURN NEXT;
END
$$;
COMMENT ON FUNCTION semsql.enrol_faces(text, bigint[], text) IS
    'Names stored faces as a person (created when new): they are assigned by hand and become '
    'references, and the other faces they match are recognised.';

-- Rename, merge, remove --------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.rename_person(p_name text, p_new_name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    person bigint := person_by_name(p_name);
BEGIN
    p_new_name := person_name(p_new_name);
    UPDATE people SET name = btrim(p_new_name) WHERE id = person AND name <> btrim(p_new_name);
    RETURN person;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'a person named "%" exists already', btrim(p_new_name)
        USING ERRCODE = 'unique_violation',
              HINT = format('semsql.merge_people(%L, %L) makes them one person', p_name,
                            btrim(p_new_name));
END
$$;
COMMENT ON FUNCTION semsql.rename_person(text, text) IS
    'Renames a person; their assets'' text vectors are queued again (the document names them).';

CREATE OR REPLACE FUNCTION semsql.merge_people(p_from text, p_into text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    source_id bigint := person_by_name(p_from);
    target_id bigint := person_by_name(p_into);
    moved integer;
BEGIN
    IF source_id = target_id THEN
        RAISE EXCEPTION '"%" and "%" are the same person', p_from, p_into
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM lock_recognition(true);
    -- A face that is not one of them is not the merged person (the source's rows cascade).
    INSERT INTO face_rejections (face_id, person_id)
    SELECT r.face_id, target_id FROM face_rejections r WHERE r.person_id = source_id
    ON CONFLICT DO NOTHING;
    UPDATE person_faces SET person_id = target_id WHERE person_id = source_id;
    UPDATE faces SET person_id = target_id WHERE person_id = source_id;
    GET DIAGNOSTICS moved = ROW_COUNT;
    -- Recognised faces now linked to a person they were said not to be look again.
    PERFORM match_faces(ARRAY(SELECT f.id FROM faces f
                              JOIN face_rejections r ON r.face_id = f.id
                                                    AND r.person_id = f.person_id
                              WHERE f.person_id = target_id AND f.match_confidence IS NOT NULL));
    INSERT INTO asset_people (asset_id, person_id, source)
    SELECT asset_id, target_id, source FROM asset_people WHERE person_id = source_id
    ON CONFLICT DO NOTHING;
    DELETE FROM people WHERE id = source_id;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION semsql.merge_people(text, text) IS
    'Makes p_from part of p_into: its references, faces, stated assets and the faces said not '
    'to be them move, then p_from is deleted. Returns how many faces moved.';

CREATE OR REPLACE FUNCTION semsql.remove_person(p_name text) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    person bigint := person_by_name(p_name);
    unlinked bigint[];
BEGIN
    PERFORM lock_recognition(true);
    unlinked := ARRAY(SELECT id FROM faces WHERE person_id = person);
    -- References and stated appearances cascade; faces.person_id becomes NULL.
    DELETE FROM people WHERE id = person;
    -- Another person may match them now.
    PERFORM match_faces(unlinked);
    RETURN cardinality(unlinked);
END
$$;
COMMENT ON FUNCTION semsql.remove_person(text) IS
    'Deletes a person with their references; their faces are unlinked and matched again. '
    'Returns how many faces were theirs.';

CREATE OR REPLACE FUNCTION semsql.face_match_after(p_face_id bigint, p_person_id bigint)
RETURNS TABLE (face_id bigint, said_of text, person text, match_confidence real)
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT f.id, (SELECT p.name FROM people p WHERE p.id = p_person_id), p.name,
           f.match_confidence
    FROM faces f LEFT JOIN people p ON p.id = f.person_id
    WHERE f.id = p_face_id;
$$;
COMMENT ON FUNCTION semsql.face_match_after(bigint, bigint) IS
    'What reject_face_person and undo_face_rejection answer: the face, the name of the person '
    'said (not) to be it, and whom the face matches now (NULL: nobody) with what confidence.';

CREATE OR REPLACE FUNCTION semsql.reject_face_person(p_face_id bigint)
RETURNS TABLE (face_id bigint, rejected text, person text, match_confidence real)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    current_person bigint;
    others bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM faces f WHERE f.id = p_face_id) THEN
        RAISE EXCEPTION 'no face has id %', coalesce(p_face_id::text, 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM lock_recognition(true);
    SELECT f.person_id INTO current_person FROM faces f WHERE f.id = p_face_id FOR UPDATE;
    IF current_person IS NULL THEN
        RAISE EXCEPTION 'face % is not linked to anyone', p_face_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO face_rejections (face_id, person_id) VALUES (p_face_id, current_person)
    ON CONFLICT DO NOTHING;
    -- A reference taken from this face is no evidence for them any more: the faces it won
    -- look again.
    WITH dropped AS (
        DELETE FROM person_faces pf WHERE pf.face_id = p_face_id AND pf.person_id = current_person
        RETURNING pf.id)
    SELECT ARRAY(SELECT f.id FROM faces f
                 WHERE f.person_id = current_person AND f.match_confidence IS NOT NULL
                   AND f.id <> p_face_id AND EXISTS (SELECT 1 FROM dropped))
    INTO others;
    UPDATE faces f SET person_id = NULL, match_confidence = NULL WHERE f.id = p_face_id;
    PERFORM match_faces(ARRAY[p_face_id] || others);
    RETURN QUERY SELECT * FROM face_match_after(p_face_id, current_person);
END
$$;
COMMENT ON FUNCTION semsql.reject_face_person(bigint) IS
    '"Not this person": unlinks a face from the person it is linked to (recognised or named) and '
    'records that it is not them (semsql.face_rejections), so that recognition never matches it '
    'to them again; a reference taken from the face is dropped. The face is matched again '
    'against everyone else. Returns the person rejected and the one it matches now, if any.';

CREATE OR REPLACE FUNCTION semsql.undo_face_rejection(p_face_id bigint, p_person_id bigint)
RETURNS TABLE (face_id bigint, restored text, person text, match_confidence real)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM lock_recognition(true);
    DELETE FROM face_rejections r WHERE r.face_id = p_face_id AND r.person_id = p_person_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'face % was not said not to be person %', coalesce(p_face_id::text, 'NULL'),
                        coalesce(p_person_id::text, 'NULL')
            USING ERRCODE = 'no_data_found';
    END IF;
    -- Matched as recognition matches any face now (a face named by hand keeps its person).
    -- A reference the rejection dropped is not restored: naming the face does that.
    PERFORM match_faces(ARRAY[p_face_id]);
    RETURN QUERY SELECT * FROM face_match_after(p_face_id, p_person_id);
END
$$;
COMMENT ON FUNCTION semsql.undo_face_rejection(bigint, bigint) IS
    'Undoes "not this person" (semsql.reject_face_person): the face may be recognised as that '
    'person again, and is matched at once as recognition would match it (faces named by hand '
    'keep their person). Returns the person restored and the one the face matches now, if any.';

-- Who is in an asset -------------------------------------------------------------------------------

CREATE OR REPLACE VIEW semsql.asset_people_all AS
SELECT ap.asset_id, ap.person_id, p.name, p.kind, ap.source, 1::real AS confidence,
       NULL::bigint AS face_id
FROM semsql.asset_people ap
JOIN semsql.people p ON p.id = ap.person_id
UNION ALL
SELECT f.asset_id, f.person_id, p.name, p.kind,
       CASE WHEN f.match_confidence IS NULL THEN 'named' ELSE 'recognised' END,
       coalesce(f.match_confidence, 1), f.id
FROM semsql.faces f
JOIN semsql.people p ON p.id = f.person_id;
COMMENT ON VIEW semsql.asset_people_all IS
    'Who is in each asset: people stated (asset_people; source as stored, e.g. user), faces '
    'recognised (source recognised, confidence = match confidence) and faces named by hand '
    '(source named). One row per statement or face; confidence 1 unless recognised.';

CREATE OR REPLACE FUNCTION semsql.asset_person_names(p_asset_id bigint) RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT coalesce(array_agg(DISTINCT name ORDER BY name), '{}')
    FROM asset_people_all WHERE asset_id = p_asset_id;
$$;
COMMENT ON FUNCTION semsql.asset_person_names(bigint) IS
    'The names of the people in an asset, stated or recognised, sorted.';

CREATE OR REPLACE FUNCTION semsql.assets_with_people(
    p_names text[], p_match_all boolean DEFAULT true, p_min_confidence double precision DEFAULT 0
) RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT x.asset_id
    FROM asset_people_all x
    WHERE lower(x.name) IN (SELECT lower(btrim(n)) FROM unnest(p_names) AS n)
      AND x.confidence >= coalesce(p_min_confidence, 0)
    GROUP BY x.asset_id
    HAVING NOT p_match_all
        OR count(DISTINCT x.person_id) = (SELECT count(DISTINCT lower(btrim(n)))
                                          FROM unnest(p_names) AS n);
$$;
COMMENT ON FUNCTION semsql.assets_with_people(text[], boolean, double precision) IS
    'The assets showing all (p_match_all) or any of these people (names, case-insensitive), '
    'stated or recognised with at least p_min_confidence.';

CREATE OR REPLACE VIEW semsql.people_summary AS
SELECT p.id, p.name, p.kind,
       coalesce(r.reference_faces, 0) AS reference_faces,
       coalesce(f.faces, 0) AS faces,
       coalesce(x.assets, 0) AS assets,
       coalesce(r.models, '{}') AS models,
       p.created_at
FROM semsql.people p
LEFT JOIN (SELECT person_id, count(*) AS reference_faces, array_agg(DISTINCT model) AS models
           FROM semsql.person_faces GROUP BY person_id) AS r ON r.person_id = p.id
LEFT JOIN (SELECT person_id, count(*) AS faces
           FROM semsql.faces WHERE person_id IS NOT NULL GROUP BY person_id) AS f
    ON f.person_id = p.id
LEFT JOIN (SELECT person_id, count(DISTINCT asset_id) AS assets
           FROM semsql.asset_people_all GROUP BY person_id) AS x ON x.person_id = p.id;
COMMENT ON VIEW semsql.people_summary IS
    'Each person: reference vectors (and their models), faces recognised or named, assets shown in.';

-- Search by face ------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.check_face_k(p_k integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'p_k must be between 1 and 10000, not %', coalesce(p_k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;
COMMENT ON FUNCTION semsql.check_face_k(integer) IS
    'Raises invalid_parameter_value unless a face search''s k is between 1 and 10000.';

CREATE OR REPLACE FUNCTION semsql.nearest_face_model(p_embedding vector) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
    SELECT f.embedding_model FROM faces f
    WHERE f.embedding IS NOT NULL
    ORDER BY f.embedding <=> p_embedding LIMIT 1;
$$;
COMMENT ON FUNCTION semsql.nearest_face_model(vector) IS
    'The face-vector model of the stored face nearest to this vector: what a face search given '
    'no model compares with, since vectors of different models are not comparable.';

CREATE OR REPLACE FUNCTION semsql.faces_like_vector(
    p_embedding vector, p_k integer DEFAULT 20, p_model text DEFAULT NULL
) RETURNS TABLE (face_id bigint, asset_id bigint, uri text, box real[], distance double precision,
                 similarity real, person_id bigint, person text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
AS $$
BEGIN
    PERFORM check_face_k(p_k);
    PERFORM check_query_vector('p_embedding', p_embedding);
    p_model := coalesce(p_model, nearest_face_model(p_embedding));
    RETURN QUERY
    SELECT n.id, n.asset_id, a.uri, n.box, n.distance, face_match_confidence(n.distance),
           n.person_id, p.name
    FROM (SELECT f.id, f.asset_id, f.box, f.person_id, f.embedding <=> p_embedding AS distance
          FROM faces f
          WHERE f.embedding_model = p_model
          ORDER BY f.embedding <=> p_embedding
          LIMIT p_k) AS n
    JOIN assets a ON a.id = n.asset_id
    LEFT JOIN people p ON p.id = n.person_id
    ORDER BY n.distance, n.id;
END
$$;
COMMENT ON FUNCTION semsql.faces_like_vector(vector, integer, text) IS
    'The k stored faces nearest to a face vector of model p_model (default: that of the nearest '
    'stored face), nearest first, '
    'through the faces HNSW index; similarity = match confidence.';

CREATE OR REPLACE FUNCTION semsql.faces_like(p_face_id bigint, p_k integer DEFAULT 20)
RETURNS TABLE (face_id bigint, asset_id bigint, uri text, box real[], distance double precision,
               similarity real, person_id bigint, person text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
BEGIN
    PERFORM check_face_k(p_k);
    IF NOT EXISTS (SELECT FROM faces f WHERE f.id = p_face_id AND f.embedding IS NOT NULL) THEN
        RAISE EXCEPTION 'no face % with a face vector', coalesce(p_face_id::text, 'NULL')
            USING ERRCODE = 'no_data_found',
                  HINT = 'semsql.faces lists the faces; face_vectors fills their vectors';
    END IF;
    RETURN QUERY
    SELECT l.*
    FROM faces f
    CROSS JOIN LATERAL faces_like_vector(f.embedding, p_k + 1, f.embedding_model) AS l
    WHERE f.id = p_face_id AND l.face_id <> p_face_id
    ORDER BY l.distance, l.face_id
    LIMIT p_k;
END
$$;
COMMENT ON FUNCTION semsql.faces_like(bigint, integer) IS
    'The k stored faces nearest to a stored face (itself left out), nearest first.';

CREATE OR REPLACE FUNCTION semsql.assets_with_face(
    p_embedding vector, p_k integer DEFAULT 20, p_model text DEFAULT NULL,
    p_min_similarity double precision DEFAULT NULL
) RETURNS TABLE (asset_id bigint, uri text, face_id bigint, box real[], similarity real,
                 person_id bigint, person text, best_at interval)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
SET hnsw.iterative_scan = strict_order
SET hnsw.max_scan_tuples = 1000000
SET hnsw.ef_search = 100
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    max_distance double precision;
    near record;
    best_faces bigint[] := '{}';
    seen_assets bigint[] := '{}';
BEGIN
    PERFORM check_face_k(p_k);
    PERFORM check_real('p_min_similarity', p_min_similarity::real, 0, 1);
    PERFORM check_query_vector('p_embedding', p_embedding);
    p_model := coalesce(p_model, nearest_face_model(p_embedding));
    max_distance := 1 - coalesce(p_min_similarity, face_match_threshold(p_model));
    -- Faces nearest first; the first face of each asset is its best.
    FOR near IN
        SELECT f.id, f.asset_id, f.embedding_model, f.embedding <=> p_embedding AS d
        FROM faces f
        ORDER BY f.embedding <=> p_embedding
        LIMIT 1000000
    LOOP
        EXIT WHEN near.d > max_distance OR cardinality(best_faces) >= p_k;
        CONTINUE WHEN near.embedding_model IS DISTINCT FROM p_model
                      OR near.asset_id = ANY (seen_assets);
        best_faces := best_faces || near.id;
        seen_assets := seen_assets || near.asset_id;
    END LOOP;
    RETURN QUERY
    SELECT f.asset_id, a.uri, f.id, f.box, face_match_confidence(f.embedding <=> p_embedding),
           f.person_id, p.name, make_interval(secs => fr.at_ms / 1000.0)
    FROM unnest(best_faces) WITH ORDINALITY AS b(face_id, rank)
    JOIN faces f ON f.id = b.face_id
    JOIN assets a ON a.id = f.asset_id
    LEFT JOIN people p ON p.id = f.person_id
    LEFT JOIN frames fr ON fr.id = f.frame_id
    ORDER BY b.rank;
END
$$;
COMMENT ON FUNCTION semsql.assets_with_face(vector, integer, text, double precision) IS
    'Up to k assets showing a face like this vector, of model p_model (default: that of the '
    'nearest stored face), with similarity at least p_min_similarity (default the model''s match '
    'threshold), best face first, one row per asset with its best face (for a video, best_at: '
    'the time of the frame it is in).';

-- Clusters of unrecognised faces ---------------------------------------------------------------------

CREATE OR REPLACE FUNCTION semsql.cluster_faces(
    p_face_ids bigint[], p_min_similarity double precision, p_min_size integer,
    p_neighbours integer DEFAULT 10
) RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    changed integer;
BEGIN
    PERFORM check_real('p_min_similarity', p_min_similarity::real, 0, 1);
    IF p_min_size IS NULL OR p_min_size < 1 THEN
        RAISE EXCEPTION 'p_min_size must be 1 or more, not %', coalesce(p_min_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_neighbours IS NULL OR p_neighbours NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'p_neighbours must be between 1 and 1000, not %',
            coalesce(p_neighbours::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DROP TABLE IF EXISTS pg_temp.semsql_cluster_nodes, pg_temp.semsql_cluster_edges;
    CREATE TEMP TABLE semsql_cluster_nodes (face_id bigint PRIMARY KEY, label bigint NOT NULL)
        ON COMMIT DROP;
    CREATE TEMP TABLE semsql_cluster_edges (a bigint NOT NULL, b bigint NOT NULL) ON COMMIT DROP;
    IF p_face_ids IS NULL THEN
        INSERT INTO semsql_cluster_nodes
        SELECT f.id, f.id FROM faces f WHERE f.embedding IS NOT NULL AND f.person_id IS NULL;
        -- Each face to its nearest faces through the HNSW index; kept when alike and unknown.
        INSERT INTO semsql_cluster_edges
        SELECT f.id, m.id
        FROM faces f
        CROSS JOIN LATERAL (SELECT 1 - coalesce(p_min_similarity,
                                                face_cluster_threshold(f.embedding_model))
                                AS max_distance) AS t
        CROSS JOIN LATERAL (
            SELECT g.id, g.person_id, g.embedding_model, g.embedding <=> f.embedding AS d
            FROM faces g
            ORDER BY g.embedding <=> f.embedding
            LIMIT p_neighbours + 1) AS m
        WHERE f.embedding IS NOT NULL AND f.person_id IS NULL
          AND m.id <> f.id AND m.person_id IS NULL AND m.embedding_model = f.embedding_model
          AND m.d <= t.max_distance;
    ELSE
        INSERT INTO semsql_cluster_nodes
        SELECT f.id, f.id FROM faces f WHERE f.id = ANY (p_face_ids) AND f.embedding IS NOT NULL;
        -- A few faces (a cluster being split): every pair.
        INSERT INTO semsql_cluster_edges
        SELECT f.id, g.id
        FROM semsql_cluster_nodes x
        JOIN semsql_cluster_nodes y ON y.face_id > x.face_id
        JOIN faces f ON f.id = x.face_id
        JOIN faces g ON g.id = y.face_id
        WHERE g.embedding_model = f.embedding_model
          AND f.embedding <=> g.embedding
              <= 1 - coalesce(p_min_similarity, face_cluster_threshold(f.embedding_model));
    END IF;
    INSERT INTO semsql_cluster_edges SELECT b, a FROM semsql_cluster_edges;
    ANALYZE semsql_cluster_nodes;
    ANALYZE semsql_cluster_edges;
    -- Connected components: every face takes the least label among its neighbours until none
    -- changes; each component ends labelled with its least face id.
    LOOP
        UPDATE semsql_cluster_nodes n SET label = m.label
        FROM (SELECT e.a, min(o.label) AS label
              FROM semsql_cluster_edges e
              JOIN semsql_cluster_nodes o ON o.face_id = e.b
              GROUP BY e.a) AS m
        WHERE n.face_id = m.a AND m.label < n.label;
        GET DIAGNOSTICS changed = ROW_COUNT;
        EXIT WHEN changed = 0;
    END LOOP;
    RETURN QUERY
    WITH big_enough AS (
        SELECT label FROM semsql_cluster_nodes GROUP BY label HAVING count(*) >= p_min_size),
    made AS (
        INSERT INTO face_clusters (seed_face_id, min_similarity)
        SELECT b.label, coalesce(p_min_similarity, face_cluster_threshold(f.embedding_model))
        FROM big_enough b JOIN faces f ON f.id = b.label ORDER BY b.label
        RETURNING id, seed_face_id),
    joined AS (
        INSERT INTO face_cluster_members (face_id, cluster_id)
        SELECT n.face_id, m.id FROM semsql_cluster_nodes n JOIN made m ON m.seed_face_id = n.label
        ON CONFLICT (face_id) DO UPDATE SET cluster_id = EXCLUDED.cluster_id)
    SELECT id FROM made ORDER BY id;
END
$$;
COMMENT ON FUNCTION semsql.cluster_faces(bigint[], double precision, integer, integer) IS
    'Makes clusters of faces (these, or every unrecognised face when NULL) of one model linked '
    'by similarity >= p_min_similarity (NULL: each model''s cluster threshold; each face to its '
    'p_neighbours nearest), as connected components of at least p_min_size faces. Returns the '
    'new cluster ids.';

CREATE OR REPLACE FUNCTION semsql.refresh_face_clusters(
    p_min_similarity double precision DEFAULT NULL, p_min_size integer DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    settings recognition_settings%ROWTYPE;
    made integer;
BEGIN
    SELECT * INTO settings FROM recognition_settings;
    PERFORM take_mutex('face_clusters');
    DELETE FROM face_clusters;
    SELECT count(*) INTO made
    FROM cluster_faces(NULL, p_min_similarity, coalesce(p_min_size, settings.min_cluster_size));
    RETURN made;
END
$$;
COMMENT ON FUNCTION semsql.refresh_face_clusters(double precision, integer) IS
    'Replaces every cluster of unrecognised faces (splits by hand are lost); the similarity '
    'defaults to each model''s cluster threshold (semsql.face_cluster_threshold), the least size '
    'to recognition_settings. Returns how many clusters there are.';

CREATE OR REPLACE VIEW semsql.face_cluster_summary AS
SELECT c.id AS cluster_id,
       count(*) AS faces,
       count(DISTINCT f.asset_id) AS assets,
       (array_agg(f.id ORDER BY f.confidence DESC NULLS LAST, f.id))[1:8] AS face_ids,
       (array_agg(a.uri ORDER BY f.confidence DESC NULLS LAST, f.id))[1:3] AS sample_uris,
       c.min_similarity,
       c.created_at
FROM semsql.face_clusters c
JOIN semsql.face_cluster_members m ON m.cluster_id = c.id
JOIN semsql.faces f ON f.id = m.face_id AND f.person_id IS NULL
JOIN semsql.assets a ON a.id = f.asset_id
GROUP BY c.id;
COMMENT ON VIEW semsql.face_cluster_summary IS
    'Each cluster of unrecognised faces: its size, assets, a few face ids and uris (most confident '
    'detections first). Faces recognised since it was made are left out.';

CREATE OR REPLACE FUNCTION semsql.cluster_face_ids(p_cluster_id bigint) RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    members bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM face_clusters WHERE id = p_cluster_id) THEN
        RAISE EXCEPTION 'no face cluster %', p_cluster_id
            USING ERRCODE = 'no_data_found',
                  HINT = 'semsql.face_cluster_summary lists them; semsql.refresh_face_clusters() '
                         'makes them again';
    END IF;
    SELECT coalesce(array_agg(m.face_id ORDER BY m.face_id), '{}') INTO members
    FROM face_cluster_members m JOIN faces f ON f.id = m.face_id AND f.person_id IS NULL
    WHERE m.cluster_id = p_cluster_id;
    RETURN members;
END
$$;
COMMENT ON FUNCTION semsql.cluster_face_ids(bigint) IS
    'The unrecognised faces of a cluster; raises no_data_found for an unknown cluster.';

CREATE OR REPLACE FUNCTION semsql.name_face_cluster(
    p_cluster_id bigint, p_name text, p_kind text DEFAULT NULL
) RETURNS TABLE (person_id bigint, references_added integer, faces_matched integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    members bigint[] := cluster_face_ids(p_cluster_id);
BEGIN
    IF members = '{}' THEN
        RAISE EXCEPTION 'face cluster % has no unrecognised faces left', p_cluster_id
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM enrol_faces(p_name, members, p_kind);
    DELETE FROM face_clusters WHERE id = p_cluster_id;
END
$$;
COMMENT ON FUNCTION semsql.name_face_cluster(bigint, text, text) IS
    'Names a cluster: enrols its faces as a person (see enrol_faces) and deletes the cluster.';

CREATE OR REPLACE FUNCTION semsql.split_face_cluster(
    p_cluster_id bigint, p_min_similarity double precision DEFAULT NULL,
    p_face_ids bigint[] DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    members bigint[];
    strays bigint[];
    stricter double precision;
    new_id bigint;
BEGIN
    PERFORM check_real('p_min_similarity', p_min_similarity::real, 0, 1);
    members := cluster_face_ids(p_cluster_id);
    PERFORM take_mutex('face_clusters');
    IF p_face_ids IS NOT NULL THEN
        strays := ARRAY(SELECT unnest(p_face_ids) EXCEPT SELECT unnest(members));
        IF strays <> '{}' THEN
            RAISE EXCEPTION 'faces % are not in cluster %', strays, p_cluster_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        INSERT INTO face_clusters (seed_face_id, min_similarity)
        SELECT min(moved.face_id), c.min_similarity
        FROM unnest(p_face_ids) AS moved(face_id), face_clusters c
        WHERE c.id = p_cluster_id GROUP BY c.min_similarity
        RETURNING id INTO new_id;
        UPDATE face_cluster_members SET cluster_id = new_id WHERE face_id = ANY (p_face_ids);
        RETURN NEXT p_cluster_id;
        RETURN NEXT new_id;
        RETURN;
    END IF;
    SELECT coalesce(p_min_similarity, (min_similarity + 1) / 2) INTO stricter
    FROM face_clusters WHERE id = p_cluster_id;
    DELETE FROM face_clusters WHERE id = p_cluster_id;
    RETURN QUERY SELECT * FROM cluster_faces(members, stricter, 1);
END
$$;
COMMENT ON FUNCTION semsql.split_face_cluster(bigint, double precision, bigint[]) IS
    'Splits a wrongly merged cluster: p_face_ids move to a new cluster, or else its faces are '
    'clustered again at p_min_similarity (default halfway between the cluster''s and 1). Returns '
    'the clusters that now hold its faces.';

CREATE OR REPLACE FUNCTION semsql.merge_face_clusters(p_from bigint, p_into bigint)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, semsql, public, pg_temp
AS $$
DECLARE
    moved integer;
BEGIN
    PERFORM cluster_face_ids(p_from);  -- raises no_data_found for an unknown cluster
    PERFORM cluster_face_ids(p_into);
    IF p_from = p_into THEN
        RAISE EXCEPTION 'cannot merge face cluster % into itself', p_from
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM take_mutex('face_clusters');
    UPDATE face_clusters t SET min_similarity = least(t.min_similarity, s.min_similarity)
    FROM face_clusters s WHERE t.id = p_into AND s.id = p_from;
    UPDATE face_cluster_members SET cluster_id = p_into WHERE cluster_id = p_from;
    GET DIAGNOSTICS moved = ROW_COUNT;
    DELETE FROM face_clusters WHERE id = p_from;
    RETURN moved;
END
$$;
COMMENT ON FUNCTION semsql.merge_face_clusters(bigint, bigint) IS
    'Makes two clusters of unknown faces one (one person): p_from''s faces join p_into, '
    'p_from is deleted. Returns how many faces moved.';
