-- Microsoft Teams: the conversations the bot has been added to, captured
-- from Bot Framework `conversationUpdate` activities (as
-- migrations/0002_teams.sql). Each row is a complete conversation
-- reference: a post needs the conversation's service URL.
CREATE TABLE teams_conversations (
    conversation_id    text PRIMARY KEY,
    service_url        text NOT NULL,
    tenant_id          text,
    conversation_type  text,              -- channel | groupChat | personal
    team_id            text,
    team_name          text,
    name               text,
    added_by           text,              -- AAD object id of who added the bot
    -- At most one row is the operator's chosen default; a policy rule's
    -- teams_conversation beats it.
    is_default         boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    removed_at         timestamptz        -- set when the bot is removed
);
CREATE UNIQUE INDEX teams_conversations_one_default
    ON teams_conversations (is_default) WHERE is_default;
-- The newest live conversation (the service URL fallback).
CREATE INDEX teams_conversations_live
    ON teams_conversations (updated_at) WHERE removed_at IS NULL;
