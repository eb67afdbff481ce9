-- Countersign core schema. Times are RFC 3339 UTC strings with milliseconds
-- (2026-01-31T12:00:00.000Z): they sort as text, so range filters use indexes.

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    -- SHA-256 of the whole token. Tokens carry 256 random bits, so a fast
    -- hash is enough; the token itself is shown once and never stored.
    token_hash  TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    principal   TEXT NOT NULL,
    owner       TEXT,
    scopes      TEXT NOT NULL,
    name        TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE approval_requests (
    id                  TEXT PRIMARY KEY,   -- UUID v7: sorts by creation time
    action              TEXT NOT NULL,
    resource            TEXT NOT NULL,
    summary             TEXT NOT NULL,
    justification       TEXT,
    details             TEXT NOT NULL,      -- JSON object
    risk                TEXT NOT NULL,
    requester           TEXT NOT NULL,
    key_id              TEXT NOT NULL,
    key_owner           TEXT,
    on_behalf_of        TEXT,
    status              TEXT NOT NULL,
    policy_rule         TEXT NOT NULL,
    policy_version      TEXT NOT NULL,
    required_approvals  INTEGER NOT NULL,
    approvers           TEXT NOT NULL,      -- JSON array, snapshot of the rule at creation
    on_expiry           TEXT NOT NULL,
    slack_channel       TEXT,
    teams_conversation  TEXT,
    callback_url        TEXT,
    payload_sha256      TEXT NOT NULL,
    created_at          TEXT NOT NULL,
    expires_at          TEXT NOT NULL,
    decided_at          TEXT,
    decided_by          TEXT,
    final_reason        TEXT,
    idempotency_key     TEXT,
    idempotency_hash    TEXT
);
CREATE UNIQUE INDEX approval_requests_idempotency
    ON approval_requests (requester, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX approval_requests_pending_expiry
    ON approval_requests (expires_at) WHERE status = 'pending';
CREATE INDEX approval_requests_status ON approval_requests (status, id);
CREATE INDEX approval_requests_requester ON approval_requests (requester, id);
CREATE INDEX approval_requests_action ON approval_requests (action, id);

CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY,
    request_id  TEXT NOT NULL REFERENCES approval_requests (id),
    principal   TEXT NOT NULL,
    verdict     TEXT NOT NULL,
    comment     TEXT,
    channel     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX decisions_request ON decisions (request_id, id);

-- The audit trail. hash = SHA-256(prev_hash || "\n" || canonical event);
-- see src/store/audit.rs. Triggers make the table append-only for every
-- client of this file, not only for this service.
CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY,
    ts          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    request_id  TEXT NOT NULL DEFAULT '',
    action      TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
-- One index per audit filter; each ends in seq (the rowid) so an equality
-- filter returns rows already in seq order and LIMIT stops early. `ts` is
-- non-decreasing in seq (the writer guarantees it), so time filters become
-- seq bounds found through audit_events_ts.
CREATE INDEX audit_events_request ON audit_events (request_id);
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_action ON audit_events (action);
CREATE INDEX audit_events_kind ON audit_events (kind);
CREATE INDEX audit_events_ts ON audit_events (ts);

-- The distinct actions and kinds in the trail, so a glob (`db.*`) or a
-- prefix (`decision.`) resolves to a few exact values, each an index lookup.
CREATE TABLE audit_facets (
    facet  TEXT NOT NULL,   -- action | kind
    value  TEXT NOT NULL,
    PRIMARY KEY (facet, value)
) WITHOUT ROWID;

-- A trigger, not the service, keeps the facets, so every writer of the
-- trail (the service, the CLI, an import) keeps them right.
CREATE TRIGGER audit_events_facets AFTER INSERT ON audit_events
BEGIN
    INSERT OR IGNORE INTO audit_facets (facet, value) SELECT 'action', NEW.action WHERE NEW.action != '';
    INSERT OR IGNORE INTO audit_facets (facet, value) VALUES ('kind', NEW.kind);
END;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- Ed25519 signatures over the chain head, one per committed batch.
CREATE TABLE audit_signatures (
    seq         INTEGER PRIMARY KEY,
    hash        TEXT NOT NULL,
    signature   TEXT NOT NULL,
    public_key  TEXT NOT NULL
);
CREATE TRIGGER audit_signatures_no_update BEFORE UPDATE ON audit_signatures
BEGIN SELECT RAISE(ABORT, 'audit signatures are append-only'); END;
CREATE TRIGGER audit_signatures_no_delete BEFORE DELETE ON audit_signatures
BEGIN SELECT RAISE(ABORT, 'audit signatures are append-only'); END;

-- Durable outbox: work that reaches outside (webhooks, chat messages).
-- Rows in one lane are delivered strictly in id order, so an update to a
-- chat message never overtakes the post that created it.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL,
    lane             TEXT NOT NULL,
    request_id       TEXT,
    payload          TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_error       TEXT,
    done_at          TEXT,
    outcome          TEXT   -- delivered | failed
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX outbox_lane ON outbox (lane, id) WHERE done_at IS NULL;

-- Where a request's chat message lives, so it can be updated in place.
CREATE TABLE chat_messages (
    request_id    TEXT NOT NULL,
    channel       TEXT NOT NULL,   -- slack | teams
    conversation  TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    extra         TEXT,
    PRIMARY KEY (request_id, channel)
);

-- Chat accounts linked to principals by an operator (slack:TEAM/USER,
-- teams:AAD_OBJECT_ID).
CREATE TABLE identities (
    external    TEXT PRIMARY KEY,
    principal   TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
