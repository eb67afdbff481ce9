-- Slack accounts seen deciding, by principal, so a message can name an
-- approver as a Slack mention (<@U123>); a display hint, not evidence.
CREATE TABLE slack_users (
    principal   text PRIMARY KEY,
    team_id     text NOT NULL,
    user_id     text NOT NULL,
    updated_at  timestamptz NOT NULL
);
