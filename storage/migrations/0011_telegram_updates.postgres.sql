-- Telegram updates seen (part 11), in PostgreSQL's words: see 0011_telegram_updates.sql.
CREATE TABLE telegram_updates (
    update_id BIGINT PRIMARY KEY,
    seen_at   DOUBLE PRECISION NOT NULL
);
CREATE INDEX telegram_updates_by_age ON telegram_updates(seen_at);
