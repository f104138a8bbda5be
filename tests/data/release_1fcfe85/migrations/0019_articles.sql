-- 0019: articles as queries. semsql.search takes article (a long text: its names of people, its
-- central sentences and keyphrases become the query; sql/046_articles.sql) and
-- article_summary (a summary to embed in place of the extracted sentences); the old signature
-- would stay beside the new one.
DROP FUNCTION IF EXISTS semsql.search(text, vector, bigint, text[], text, text[], text[], text,
                                      text, timestamptz, timestamptz, jsonb, text, integer,
                                      integer, real, real, text, boolean, real, real, real, real,
                                      real, text, text, vector, vector, real, real);
