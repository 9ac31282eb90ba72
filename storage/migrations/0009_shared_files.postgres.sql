-- PostgreSQL's words for 0009_shared_files.sql.
CREATE TABLE node_files (
    node_id    BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    platform   TEXT NOT NULL,
    file_ref   TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (node_id, platform)
);
CREATE INDEX node_files_by_platform ON node_files(platform, node_id);
