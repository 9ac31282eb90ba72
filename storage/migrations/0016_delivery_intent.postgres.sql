-- PostgreSQL's words for 0016_delivery_intent.sql (times in DOUBLE PRECISION). A delivery's intent, recorded
-- just before a job's result is handed to the platform: a job resumed that finds it set, yet no delivery
-- recorded, is in doubt — the platform may have shown the picture already.
ALTER TABLE jobs ADD COLUMN delivering_at DOUBLE PRECISION;
