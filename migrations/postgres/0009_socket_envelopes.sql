-- Slack Socket Mode envelopes already taken (src/store/socket_envelopes.rs).
-- See migrations/0009_socket_envelopes.sql: the first replica to insert an
-- envelope_id handles the envelope, the others only acknowledge it.
CREATE TABLE socket_envelopes (
    envelope_id text PRIMARY KEY,
    kind        text NOT NULL,
    received_at timestamptz NOT NULL
);

CREATE INDEX socket_envelopes_received_at ON socket_envelopes (received_at);
