-- PostgreSQL's words for 0015_send_slots.sql (times in DOUBLE PRECISION).
-- Telegram's send limits (about 30 messages a second for the bot, 20 a minute in one group, about 1 a second in
-- one private chat), kept by every process together: one row per scope ("bot", "chat:<id>") with the moments of
-- its latest sends (a JSON list, oldest first, at most the scope's limit) and when a 429 said to wait until. A
-- send locks its rows, reserves its moment and writes it before anyone sends (core/send_slots.py). One process on
-- SQLite keeps the same in memory and leaves this table empty. Times are the database's clock (PostgreSQL), so
-- machines whose clocks differ agree.
CREATE TABLE send_slots (
    scope         TEXT PRIMARY KEY,
    sent          TEXT NOT NULL DEFAULT '[]',
    blocked_until DOUBLE PRECISION NOT NULL DEFAULT 0,
    idle_after    DOUBLE PRECISION NOT NULL DEFAULT 0   -- from then on the row holds nothing a send would wait for
);
CREATE INDEX send_slots_idle ON send_slots(idle_after);
