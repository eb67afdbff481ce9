-- Microsoft Teams: the conversations the bot has been added to, captured
-- from Bot Framework `conversationUpdate` activities. The bot can only post
-- where it was added, and a post needs the conversation's service URL, so
-- each row is a complete conversation reference.

CREATE TABLE teams_conversations (
    conversation_id    TEXT PRIMARY KEY,  -- 19:…@thread.tacv2, a:… (personal), 19:…@thread.v2 (group chat)
    service_url        TEXT NOT NULL,     -- where the Bot Connector for this conversation lives
    tenant_id          TEXT,
    conversation_type  TEXT,              -- channel | groupChat | personal
    team_id            TEXT,
    team_name          TEXT,
    name               TEXT,              -- channel or chat name, when Teams sends one
    added_by           TEXT,              -- AAD object id of who added the bot
    -- At most one row is the operator's chosen default (`countersign teams
    -- conversations set-default`); a policy rule's teams_conversation beats it.
    is_default         INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    removed_at         TEXT               -- set when the bot is removed
);
CREATE UNIQUE INDEX teams_conversations_one_default
    ON teams_conversations (is_default) WHERE is_default = 1;
