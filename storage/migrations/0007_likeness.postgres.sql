-- PostgreSQL's words for 0007_likeness.sql: DOUBLE PRECISION where SQLite says REAL (4 bytes here).
ALTER TABLE nodes ADD COLUMN likeness DOUBLE PRECISION;
ALTER TABLE nodes ADD COLUMN likeness_status TEXT;
ALTER TABLE pictured ADD COLUMN likeness DOUBLE PRECISION;
