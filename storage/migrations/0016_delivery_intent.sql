-- A delivery's intent, recorded just before a job's result is handed to the platform: a job resumed (its worker
-- killed, or the bot restarted) that finds it set, yet no delivery recorded, is in doubt — the platform may have
-- shown the picture already. It is sent again saying so (Telegram has no way to ask), or with the same nonce
-- (Discord returns the message it made the first time instead of a second one). The delivery itself is recorded
-- with the job's end, in one transaction.
ALTER TABLE jobs ADD COLUMN delivering_at REAL;
