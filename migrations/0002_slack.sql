-- Slack accounts seen deciding, by principal, so a message can name an
-- approver as a Slack mention (<@U123>) rather than by e-mail address.
-- Learned whenever a Slack user is resolved to a principal; not evidence of
-- anything (the audit trail is), only a display hint.
CREATE TABLE slack_users (
    principal   TEXT PRIMARY KEY,
    team_id     TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
