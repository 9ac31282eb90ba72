-- Telegram updates seen (part 11): with webhooks several gateways may each be handed the same update (Telegram
-- retries one it got no answer for; a polling restart before the offset was confirmed fetches it again). Each
-- gateway records the update_id before handling it and handles it only if its INSERT added the row. Rows older
-- than a day are pruned: Telegram stops retrying long before that. WITHOUT ROWID: the ids are Telegram's, never
-- numbered by SQLite.
CREATE TABLE telegram_updates (
    update_id INTEGER PRIMARY KEY,
    seen_at   REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX telegram_updates_by_age ON telegram_updates(seen_at);
