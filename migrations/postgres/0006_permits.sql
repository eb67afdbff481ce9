-- Permits redeemed at their targets (src/permits). The primary key makes a
-- second redemption fail inside the transaction that would record it, on
-- any replica, so two targets racing on one approval cannot both win.
CREATE TABLE permit_redemptions (
    jti         uuid PRIMARY KEY,   -- the approval request's id
    redeemed_by text NOT NULL,      -- the principal of the key that redeemed it
    key_id      uuid NOT NULL,
    redeemed_at timestamptz NOT NULL
);
