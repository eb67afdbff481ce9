-- The web console (src/console): one-time sign-in links, console sessions,
-- and which requests need a console decision (step-up).
--
-- Tokens are never stored: only their SHA-256 (hex). A link is consumed by
-- one conditional UPDATE (`used_at IS NULL AND expires_at > now`), so two
-- clicks racing on one link, on one replica or several, cannot both sign in.
CREATE TABLE console_login_links (
    token_hash TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);

CREATE TABLE console_sessions (
    token_hash   TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    method       TEXT NOT NULL,      -- link, oidc or api_key
    auth_time    TEXT NOT NULL,      -- when the person last proved who they are
    created_at   TEXT NOT NULL,
    last_seen    TEXT NOT NULL,
    idle_expires TEXT NOT NULL,      -- slides with use
    expires_at   TEXT NOT NULL,      -- absolute
    csrf_secret  TEXT NOT NULL,
    scopes       TEXT NOT NULL,      -- the signing-in key's scopes (api_key), else empty
    ended_at     TEXT
);

-- Requests whose rule says `step_up: console`: only a console decision with
-- the resource re-typed counts (src/domain/rules.rs). Written with the
-- request, in the same job; also recorded in its `policy.evaluated` event.
CREATE TABLE request_step_up (
    request_id TEXT PRIMARY KEY,
    mode       TEXT NOT NULL
);
