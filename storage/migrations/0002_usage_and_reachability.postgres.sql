-- PostgreSQL's words for 0002_usage_and_reachability.sql.
CREATE INDEX nodes_by_age ON nodes(created_at);
CREATE INDEX jobs_by_day ON jobs(updated_at, status);

CREATE TABLE blocked_chats (
    platform TEXT NOT NULL,
    chat_id  TEXT NOT NULL,
    since    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, chat_id)
);
