-- A job's engine calls beyond the pictures it delivers: a Gemini picture that kept too little of the face
-- ([likeness] retry_below) is drawn once more and the better one sent. The extra call is priced in /stats and
-- [limits] daily_usd, but it is not a picture: limits and credits count `pictures`, never this.
-- Portable SQL: the same on PostgreSQL.
ALTER TABLE jobs ADD COLUMN extra_calls INTEGER NOT NULL DEFAULT 0;
