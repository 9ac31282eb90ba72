-- Whose photo a photo node is: its sender, who need not be the person who asked for a picture of it
-- (a style command replying to someone else's photo, Discord's "Pix Me" menu on someone's message).
-- NULL for pictures the bot made. Rows from before: best effort, the person who asked.
ALTER TABLE nodes ADD COLUMN owner_id TEXT;
UPDATE nodes SET owner_id = user_id WHERE kind = 'photo';
CREATE INDEX nodes_by_owner ON nodes(platform, owner_id) WHERE owner_id IS NOT NULL;
-- /forget walks every tree rooted in a person's photos.
CREATE INDEX nodes_by_root ON nodes(root_id) WHERE root_id IS NOT NULL;
CREATE INDEX nodes_by_parent ON nodes(parent_id) WHERE parent_id IS NOT NULL;

-- Whose faces a picture shows: the sender of the photo it was made from, or everyone in the group picture
-- it was made from. Kept on every picture, so /forget finds it even after retention removed that photo.
CREATE TABLE pictured (
    node_id  INTEGER NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    platform TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    PRIMARY KEY (node_id, user_id)
) WITHOUT ROWID;
CREATE INDEX pictured_by_person ON pictured(platform, user_id);
-- Group pictures made before: best effort, from the photos their jobs name (while those still exist).
INSERT OR IGNORE INTO pictured (node_id, platform, user_id)
SELECT j.result_node, n.platform, n.owner_id
FROM jobs j, json_each(j.payload, '$.portraits') p
JOIN nodes n ON n.id = json_extract(p.value, '$[1]')
WHERE j.kind = 'fuse' AND n.owner_id IS NOT NULL AND j.result_node IN (SELECT id FROM nodes);
-- Pictures made from a photo, or from a group picture, show the same people.
INSERT OR IGNORE INTO pictured (node_id, platform, user_id)
SELECT n.id, n.platform, r.owner_id FROM nodes n JOIN nodes r ON r.id = n.root_id
WHERE r.kind = 'photo' AND r.owner_id IS NOT NULL;
INSERT OR IGNORE INTO pictured (node_id, platform, user_id)
SELECT n.id, p.platform, p.user_id FROM nodes n JOIN pictured p ON p.node_id = n.root_id;
