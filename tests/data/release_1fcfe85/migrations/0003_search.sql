-- 0003: what search needs besides the vectors: one row per asset with its filterable facts and
-- its full-text document, and the row type that semsql.search returns. The functions that
-- keep search_documents current and that search live in sql/040_search.sql.

CREATE TABLE semsql.search_documents (
    asset_id      bigint PRIMARY KEY REFERENCES semsql.assets (id) ON DELETE CASCADE,
    collection    text NOT NULL,
    uri           text NOT NULL,
    taken_at      timestamptz,
    tags          text[] NOT NULL DEFAULT '{}',
    emotions      text[] NOT NULL DEFAULT '{}',
    people        bigint[] NOT NULL DEFAULT '{}',
    document      tsvector NOT NULL DEFAULT '',
    caption       text,
    labels        text[] NOT NULL DEFAULT '{}',
    people_names  text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Each filter has its own index, so that the planner can AND them in one bitmap scan.
CREATE INDEX search_documents_tags ON semsql.search_documents USING gin (tags);
CREATE INDEX search_documents_emotions ON semsql.search_documents USING gin (emotions);
CREATE INDEX search_documents_people ON semsql.search_documents USING gin (people);
CREATE INDEX search_documents_document ON semsql.search_documents USING gin (document);
CREATE INDEX search_documents_collection ON semsql.search_documents (collection);
CREATE INDEX search_documents_taken_at ON semsql.search_documents (taken_at);
COMMENT ON TABLE semsql.search_documents IS
    'Per asset, what search filters on, matches keywords in and shows, in one row; kept current '
    'by triggers (semsql.refresh_search_documents rebuilds rows).';
COMMENT ON COLUMN semsql.search_documents.tags IS 'Distinct tag labels, lower case (any source).';
COMMENT ON COLUMN semsql.search_documents.emotions IS 'Distinct facial emotions of the asset''s faces, lower case.';
COMMENT ON COLUMN semsql.search_documents.people IS
    'Ids of the people shown: stated (asset_people) or recognised (faces.person_id).';
COMMENT ON COLUMN semsql.search_documents.document IS
    'English full-text vector of captions and people names (weight A), tags (B) and emotions (C).';
COMMENT ON COLUMN semsql.search_documents.caption IS
    'What search shows: the user caption, else the newest model caption (likewise uri, labels, people_names).';
COMMENT ON COLUMN semsql.search_documents.labels IS
    'Tag labels as written, one per lower-case label, the most confident first.';

-- Assets whose facts a transaction changed; their documents are rebuilt once each when it
-- commits (a deferred trigger), however many statements touched them.
CREATE UNLOGGED TABLE semsql.search_documents_stale (
    asset_id     bigint NOT NULL,
    transaction  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (asset_id, transaction)
);
COMMENT ON TABLE semsql.search_documents_stale IS
    'Assets whose search document the current transaction must rebuild at commit; empty between transactions.';

CREATE TYPE semsql.search_result AS (
    asset_id       bigint,
    uri            text,
    score          real,
    caption        text,
    tags           text[],
    emotions       text[],
    people         text[],
    matched_by     text[],
    image_score    real,
    text_score     real,
    keyword_score  real,
    exclude_score  real,
    taken_at       timestamptz,
    rank           integer
);
COMMENT ON TYPE semsql.search_result IS
    'A row of semsql.search: the fused score, what the asset shows, which signals found it '
    '(matched_by) and each signal''s score; rank is the place by relevance.';
