-- A webhook update is recorded as pending while a gateway handles it, and stays recorded once it is handled. A
-- gateway that could not handle it (the database went away before the request became a job) forgets it and
-- answers Telegram 500, so the redelivery is handled rather than skipped as "taken before"; one that died while
-- handling it leaves a pending record that another gateway takes over once it is stale. Rows recorded before
-- this step were handled. Portable SQL: the same on PostgreSQL.
ALTER TABLE telegram_updates ADD COLUMN pending INTEGER NOT NULL DEFAULT 0;
