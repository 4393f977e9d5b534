-- Indexes for the @lid merge path (store/people.py): without them these statements read every
-- tenant's rows (tests/test_merge_indexes.py EXPLAINs each one against 50k rows of others).

-- Conversations of a contact: the merge moves them to the phone contact, and deleting a
-- contact sets their contact_id to NULL (the foreign key's action): both looked up by
-- contact_id.  Groups have none, so they are left out.
CREATE INDEX IF NOT EXISTS idx_conversations_contact_id
  ON conversations (contact_id) WHERE contact_id IS NOT NULL;

-- Messages whose sender is still a @lid: renamed to the phone jid once the pair is learned.
-- Only those can ever be renamed, so only those are indexed (a phone sender costs nothing).
CREATE INDEX IF NOT EXISTS idx_messages_lid_sender
  ON messages (instance_name, sender_jid) WHERE sender_jid LIKE '%@lid';

-- A phone contact looks up its @lid (upserting a contact).
CREATE INDEX IF NOT EXISTS idx_jid_aliases_phone
  ON jid_aliases (instance_name, phone_jid);
