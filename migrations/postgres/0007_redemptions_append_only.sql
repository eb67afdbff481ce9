-- A redemption is evidence, like the trail: once a permit is spent, who
-- spent it and when must not change. The service only ever inserts (with
-- ON CONFLICT DO NOTHING); these refuse UPDATE, DELETE and TRUNCATE from
-- any client. `countersign audit verify` still checks every row against
-- its `permit.redeemed` event.
CREATE TRIGGER permit_redemptions_no_update BEFORE UPDATE OR DELETE ON permit_redemptions
    FOR EACH ROW EXECUTE FUNCTION countersign_append_only();
CREATE TRIGGER permit_redemptions_no_truncate BEFORE TRUNCATE ON permit_redemptions
    FOR EACH STATEMENT EXECUTE FUNCTION countersign_append_only();

-- A timestamptz as the service's clock text (RFC 3339 UTC, milliseconds:
-- `clock::fmt`), so every time the service reads back is the exact text
-- SQLite would hold and the trail hashed. The service writes whole
-- milliseconds, so nothing is rounded.
CREATE FUNCTION cs_ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- A checkpoint row a newer head replaced is finished as `superseded`
-- (src/store/checkpoint_sinks.rs); 0001's check predates it.
ALTER TABLE outbox DROP CONSTRAINT outbox_outcome_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_outcome_check
    CHECK (outcome IN ('delivered', 'failed', 'superseded'));
