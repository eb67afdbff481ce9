-- Permits redeemed at their targets (src/permits). One row per permit:
-- the primary key makes a second redemption fail inside the same
-- transaction that would record it, so two targets racing to act on one
-- approval cannot both win. Each row has a `permit.redeemed` audit event.
CREATE TABLE permit_redemptions (
    jti         TEXT PRIMARY KEY,   -- the approval request's id
    redeemed_by TEXT NOT NULL,      -- the principal of the key that redeemed it
    key_id      TEXT NOT NULL,      -- that key's id
    redeemed_at TEXT NOT NULL
);
