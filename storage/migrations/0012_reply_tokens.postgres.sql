-- PostgreSQL's words for 0011_reply_tokens.sql (REAL is single precision there: a unix time needs DOUBLE).
CREATE TABLE reply_tokens (
    platform   TEXT NOT NULL,
    request_id TEXT NOT NULL,
    secret     TEXT NOT NULL,
    details    TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    delivered  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (platform, request_id)
);
CREATE INDEX reply_tokens_by_expiry ON reply_tokens(expires_at);
