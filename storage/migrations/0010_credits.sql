-- Credits ([credits]): pictures over the day's free allowance are paid for with credits bought with Telegram
-- Stars. Written in SQL that SQLite and PostgreSQL both read.

-- One row per payment, keyed by Telegram's charge id: recording it and crediting its pictures are one INSERT,
-- so a replayed update (a restart before the offset was confirmed, a duplicate) credits once.
CREATE TABLE payments (
    charge_id   TEXT PRIMARY KEY,                       -- telegram_payment_charge_id
    platform    TEXT NOT NULL,
    user_id     TEXT NOT NULL,                          -- who paid: the credits are theirs, in every chat
    stars       INTEGER NOT NULL,
    images      INTEGER NOT NULL,                       -- pictures the pack gave
    remaining   INTEGER NOT NULL CHECK (remaining >= 0),  -- of those, neither spent nor held by a picture
    payload     TEXT NOT NULL,                          -- the invoice payload, e.g. pack:50:10
    paid_at     REAL NOT NULL,
    refunded_at REAL,                                   -- NULL: not refunded
    removed     INTEGER NOT NULL DEFAULT 0              -- unused pictures the refund took back
);
CREATE INDEX payments_by_person ON payments(platform, user_id, paid_at);

-- One unit held per picture an accepted request makes (in the same transaction as its job; variants and style
-- packs make several): a free picture of the day (charge_id NULL) or one credit of a payment. Spent on delivery;
-- returned when the picture fails, is blocked or is cancelled (a returned credit goes back to its payment).
CREATE TABLE credit_holds (
    job_id     INTEGER NOT NULL,
    unit       INTEGER NOT NULL,                        -- 0 .. the job's pictures - 1
    platform   TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    charge_id  TEXT,
    status     TEXT NOT NULL,                           -- held | spent | returned
    held_at    REAL NOT NULL,
    settled_at REAL,
    PRIMARY KEY (job_id, unit)
);
CREATE INDEX credit_holds_by_person ON credit_holds(platform, user_id, held_at);
CREATE INDEX credit_holds_held ON credit_holds(status) WHERE status = 'held';
