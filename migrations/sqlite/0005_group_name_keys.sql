-- Group names of a pair must not look alike: "SHOP" beside "shop", or a manual group named
-- like an automatic one with a zero-width character added. `name_key` is the name as it
-- is compared (invisible characters removed, compatibility forms unified, case folded);
-- SQL cannot fold Unicode case, so the server computes it, for every row it writes and, at
-- start-up, for rows written before this column existed.
--
-- NULL for a row not keyed yet, and for an old row that collides with an older one of its
-- pair: it keeps its name, and only keyed rows are kept unique.
ALTER TABLE contact_groups ADD COLUMN name_key TEXT;

CREATE UNIQUE INDEX contact_groups_unique_name_key
    ON contact_groups (user_id, place_id, name_key) WHERE name_key IS NOT NULL;
