-- How a platform can show a delivered picture again without an upload: Telegram's file_id of the photo it
-- sent, which inline answers (InlineQueryResultCachedPhoto) need. One row per picture and platform; it goes
-- with its node (/forget, retention).
CREATE TABLE node_files (
    node_id    INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    platform   TEXT NOT NULL,
    file_ref   TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (node_id, platform)
);
CREATE INDEX node_files_by_platform ON node_files(platform, node_id);
