-- PostgreSQL's words for 0006_whose_photo.sql. The same backfills, from JSON with PostgreSQL's functions.
ALTER TABLE nodes ADD COLUMN owner_id TEXT;
UPDATE nodes SET owner_id = user_id WHERE kind = 'photo';
CREATE INDEX nodes_by_owner ON nodes(platform, owner_id) WHERE owner_id IS NOT NULL;
CREATE INDEX nodes_by_root ON nodes(root_id) WHERE root_id IS NOT NULL;
CREATE INDEX nodes_by_parent ON nodes(parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE pictured (
    node_id  BIGINT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (node_id, user_id)
);
CREATE INDEX pictured_by_person ON pictured(platform, user_id);
INSERT INTO pictured (node_id, platform, user_id)
SELECT j.result_node, n.platform, n.owner_id
FROM jobs j
CROSS JOIN LATERAL jsonb_array_elements(
    CASE WHEN jsonb_typeof(j.payload::jsonb -> 'portraits') = 'array' THEN j.payload::jsonb -> 'portraits'
         ELSE '[]'::jsonb END) p
JOIN nodes n ON n.id = (p.value ->> 1)::bigint
WHERE j.kind = 'fuse' AND n.owner_id IS NOT NULL AND j.result_node IN (SELECT id FROM nodes)
ON CONFLICT DO NOTHING;
INSERT INTO pictured (node_id, platform, user_id)
SELECT n.id, n.platform, r.owner_id FROM nodes n JOIN nodes r ON r.id = n.root_id
WHERE r.kind = 'photo' AND r.owner_id IS NOT NULL
ON CONFLICT DO NOTHING;
INSERT INTO pictured (node_id, platform, user_id)
SELECT n.id, p.platform, p.user_id FROM nodes n JOIN pictured p ON p.node_id = n.root_id
ON CONFLICT DO NOTHING;
