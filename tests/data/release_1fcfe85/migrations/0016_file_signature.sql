-- 0016: re-ingest that does not read. Each asset of a local file keeps the stat signature its
-- file and XMP sidecars had when they were last read (semsql/signature.py), so that a later
-- `semsql ingest` skips a file whose signature is unchanged without opening it.

ALTER TABLE semsql.assets ADD COLUMN file_signature jsonb;
COMMENT ON COLUMN semsql.assets.file_signature IS
    'The stat signature of the file and its XMP sidecars when last read, {v, size, mtime_ns, '
    'ctime_ns, ino, sidecars}: a re-ingest skips the file unread while it matches. NULL: not '
    'known (a URL, a file changed just before it was read, or stated facts from a manifest), so '
    'the next ingest reads the file.';
COMMENT ON TABLE semsql.assets IS
    'One image (or video) per row; uri is an absolute path, a file:// URI for names that are not '
    'UTF-8, or an http(s) URL; file_signature lets a re-ingest skip an unchanged file unread.';
