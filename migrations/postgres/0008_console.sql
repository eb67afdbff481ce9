-- The web console (src/console): one-time sign-in links, console sessions,
-- and which requests need a console decision (step-up). See
-- migrations/0008_console.sql; tokens are stored only as SHA-256 (hex),
-- and a link is consumed by one conditional UPDATE, so two replicas racing
-- on one link cannot both sign in.
CREATE TABLE console_login_links (
    token_hash text PRIMARY KEY,
    principal  text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE TABLE console_sessions (
    token_hash   text PRIMARY KEY,
    principal    text NOT NULL,
    method       text NOT NULL,
    auth_time    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    idle_expires timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    csrf_secret  text NOT NULL,
    scopes       text NOT NULL,
    ended_at     timestamptz
);

CREATE TABLE request_step_up (
    request_id uuid PRIMARY KEY,
    mode       text NOT NULL
);
