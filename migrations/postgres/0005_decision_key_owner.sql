-- The owner of the API key a decision was made with (API decisions; chat
-- decisions have none). The rules refuse a key whose owner is involved in
-- the request, and a quorum counts the owner and the key's principal as
-- one person each, never twice.
ALTER TABLE decisions ADD COLUMN key_owner text;
