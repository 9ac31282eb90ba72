-- Images are files named by SHA-256; this table records what we know of each.
CREATE TABLE images (
    sha        TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at REAL NOT NULL
);

-- The edit tree: a photo node per selfie, and one node per image the bot made from a parent.
CREATE TABLE nodes (
    id          INTEGER PRIMARY KEY,
    platform    TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    parent_id   INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    root_id     INTEGER,
    kind        TEXT NOT NULL,
    image_sha   TEXT NOT NULL,
    mime        TEXT NOT NULL,
    style       TEXT,
    instruction TEXT,
    engine      TEXT,
    model       TEXT,
    commentary  TEXT NOT NULL DEFAULT '',
    depth       INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL
);
CREATE INDEX nodes_by_user ON nodes(platform, user_id);
CREATE INDEX nodes_by_image ON nodes(image_sha);

-- Which platform messages show which node, so a reply resolves with one indexed lookup.
CREATE TABLE node_messages (
    platform   TEXT NOT NULL,
    chat_id    TEXT NOT NULL,
    message_id TEXT NOT NULL,
    node_id    INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    PRIMARY KEY (platform, chat_id, message_id)
) WITHOUT ROWID;
CREATE INDEX node_messages_by_node ON node_messages(node_id);

-- Durable jobs: written before any work starts, resumed after a restart.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    platform          TEXT NOT NULL,
    chat_id           TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL,
    target            TEXT NOT NULL,
    status            TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    result_node       INTEGER,
    delivered_message TEXT,
    error             TEXT,
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX jobs_unfinished ON jobs(status) WHERE status IN ('queued', 'running', 'done');
CREATE INDEX jobs_by_user ON jobs(platform, user_id);
