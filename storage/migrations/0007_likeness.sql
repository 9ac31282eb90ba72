-- How recognisably a picture keeps the face of the person in the selfie it was made from (core/likeness.py).
-- likeness: 0-100, NULL while not scored. likeness_status: NULL (not scored), 'scored', 'no_face' (no face
-- found in the picture: said instead of a score) or 'no_reference' (none in the selfie, so nothing to compare).
ALTER TABLE nodes ADD COLUMN likeness REAL;
ALTER TABLE nodes ADD COLUMN likeness_status TEXT;
-- A group picture: each member's selfie against their best face in it (NULL: not scored, or not found).
ALTER TABLE pictured ADD COLUMN likeness REAL;
