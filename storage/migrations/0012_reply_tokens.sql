-- Interaction tokens (Discord): a slash command's answers are follow-ups of its interaction, which only its
-- token can send, for 15 minutes. Kept here so whichever process delivers the job can follow up (a worker, or
-- the same bot after a restart); an expired one is deleted. PostgreSQL runs 0011_reply_tokens.postgres.sql.
CREATE TABLE reply_tokens (
    platform   TEXT NOT NULL,
    request_id TEXT NOT NULL,                  -- the message that shows the request (answers reply to it)
    secret     TEXT NOT NULL,                  -- the token: it lets its holder answer as the bot until expires_at
    details    TEXT NOT NULL,                  -- JSON: what else sending needs (application id, upload limit, …)
    expires_at REAL NOT NULL,                  -- unix time
    delivered  INTEGER NOT NULL DEFAULT 0,     -- the result is out: later posts go to the channel instead
    PRIMARY KEY (platform, request_id)
);
CREATE INDEX reply_tokens_by_expiry ON reply_tokens(expires_at);
