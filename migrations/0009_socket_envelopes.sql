-- Slack Socket Mode envelopes already taken (src/store/socket_envelopes.rs).
--
-- Slack may hand the same envelope to more than one open connection, and
-- sends an unacknowledged one again (`retry_attempt`), possibly to another
-- replica. Whoever inserts the envelope_id first handles it; every other
-- connection only acknowledges it. Rows are pruned after an hour, far
-- longer than Slack keeps retrying.
CREATE TABLE socket_envelopes (
    envelope_id TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,      -- interactive, slash_commands, events_api
    received_at TEXT NOT NULL
);

CREATE INDEX socket_envelopes_received_at ON socket_envelopes (received_at);
