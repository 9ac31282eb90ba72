-- Avatar parties: a lobby in a group chat that fuses its members' selfies into one picture.
CREATE TABLE parties (
    id            INTEGER PRIMARY KEY,
    platform      TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    host_id       TEXT NOT NULL,
    host_name     TEXT NOT NULL,
    style         TEXT NOT NULL,
    theme         TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL,          -- open | started | cancelled | closed
    lobby_message TEXT,
    reply_to      TEXT,                   -- the /party message the lobby answers
    deadline      REAL NOT NULL,
    created_at    REAL NOT NULL
);
-- One open party per chat, enforced by the database itself.
CREATE UNIQUE INDEX parties_one_open_per_chat ON parties(platform, chat_id) WHERE status = 'open';
CREATE INDEX parties_by_lobby ON parties(platform, chat_id, lobby_message);

-- Who is in a party, and which of their own selfies (a photo node they sent) it uses.
CREATE TABLE party_members (
    party_id  INTEGER NOT NULL REFERENCES parties(id) ON DELETE CASCADE,
    user_id   TEXT NOT NULL,
    name      TEXT NOT NULL,
    node_id   INTEGER REFERENCES nodes(id) ON DELETE SET NULL,
    joined_at REAL NOT NULL,
    PRIMARY KEY (party_id, user_id)
);
