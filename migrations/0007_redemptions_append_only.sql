-- A redemption is evidence, like the trail: once a permit is spent, who
-- spent it and when must not change. The service only ever inserts (with
-- ON CONFLICT DO NOTHING); these refuse a rewrite by anyone else using the
-- service's schema. Someone who drops the triggers is still caught by
-- `countersign audit verify`, which checks every row against its
-- `permit.redeemed` event.
CREATE TRIGGER permit_redemptions_no_update BEFORE UPDATE ON permit_redemptions
BEGIN SELECT RAISE(ABORT, 'permit redemptions are append-only'); END;
CREATE TRIGGER permit_redemptions_no_delete BEFORE DELETE ON permit_redemptions
BEGIN SELECT RAISE(ABORT, 'permit redemptions are append-only'); END;
