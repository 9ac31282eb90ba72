-- PostgreSQL's words for 0004_people.sql.
CREATE TABLE preferences (
    scope        TEXT NOT NULL,           -- person | chat
    platform     TEXT NOT NULL,
    owner_id     TEXT NOT NULL,
    model        TEXT,
    aspect_ratio TEXT,
    image_size   TEXT,
    delivery     TEXT,                    -- photo | file | both
    persona      TEXT NOT NULL DEFAULT '',
    language     TEXT,
    updated_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (scope, platform, owner_id)
);
CREATE INDEX nodes_by_person_in_chat ON nodes(platform, chat_id, user_id, id);
