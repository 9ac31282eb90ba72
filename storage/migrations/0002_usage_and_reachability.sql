-- Retention purges by age, daily quotas and /stats count by day.
CREATE INDEX nodes_by_age ON nodes(created_at);
CREATE INDEX jobs_by_day ON jobs(updated_at, status);

-- Chats where the platform refuses our messages for good (the person blocked the bot).
CREATE TABLE blocked_chats (
    platform TEXT NOT NULL,
    chat_id  TEXT NOT NULL,
    since    REAL NOT NULL,
    PRIMARY KEY (platform, chat_id)
) WITHOUT ROWID;
