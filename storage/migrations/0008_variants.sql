-- A request for several pictures at once (variants, a style pack) is one job that makes them all: it counts, and
-- is priced, as that many pictures, and remembers every one it made, in order (ids joined by commas), so a
-- restart between saving and delivering still sends them all. Portable SQL: the same on PostgreSQL.
ALTER TABLE jobs ADD COLUMN pictures INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN result_nodes TEXT;
-- How many candidates one request of a person's makes (NULL: the operator's [gemini] variants).
ALTER TABLE preferences ADD COLUMN variants INTEGER;
