-- Contacts, conversations and messages.  Keys make duplicates impossible:
-- one contact per instance and jid (and per @lid), one conversation per instance and chat jid,
-- one message per instance, WhatsApp id and direction (stricter than "per chat": a WhatsApp id
-- is unique across chats, and a @lid/phone re-delivery must not make a second row).
CREATE TABLE IF NOT EXISTS jid_aliases (
  instance_name TEXT NOT NULL,
  lid TEXT NOT NULL,
  phone_jid TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  PRIMARY KEY (instance_name, lid)
);

CREATE TABLE IF NOT EXISTS contacts (
  id BIGSERIAL PRIMARY KEY,
  instance_name TEXT NOT NULL,
  jid TEXT NOT NULL,            -- canonical: the phone jid when known, else the @lid
  lid TEXT,
  phone_number TEXT,
  push_name TEXT,
  profile_pic_url TEXT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  UNIQUE (instance_name, jid)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_contacts_instance_lid
  ON contacts (instance_name, lid) WHERE lid IS NOT NULL;

CREATE TABLE IF NOT EXISTS conversations (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_name TEXT NOT NULL,
  remote_jid TEXT NOT NULL,
  is_group BOOLEAN NOT NULL DEFAULT false,
  title TEXT,
  title_at TIMESTAMPTZ,         -- a group's subjectTime: subjects only move forward
  contact_id BIGINT REFERENCES contacts(id) ON DELETE SET NULL,
  last_message_at TIMESTAMPTZ,
  unread_count INTEGER NOT NULL DEFAULT 0,
  metadata JSONB NOT NULL DEFAULT '{}'::jsonb,
  deleted_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  UNIQUE (instance_name, remote_jid)
);
CREATE INDEX IF NOT EXISTS idx_conversations_recent
  ON conversations (instance_name, (coalesce(last_message_at, '-infinity')) DESC, id DESC);

CREATE TABLE IF NOT EXISTS messages (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  seq BIGSERIAL NOT NULL,       -- arrival order: breaks ties between messages of one second
  instance_name TEXT NOT NULL,
  conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  remote_jid TEXT NOT NULL,
  wa_message_id TEXT NOT NULL,
  from_me BOOLEAN NOT NULL,
  sender_jid TEXT,
  push_name TEXT,
  type TEXT NOT NULL,
  text TEXT,
  status TEXT NOT NULL,
  status_rank SMALLINT NOT NULL,
  quoted_wa_message_id TEXT,
  sent_at TIMESTAMPTZ NOT NULL,
  edited_at TIMESTAMPTZ,
  auto_reply BOOLEAN NOT NULL DEFAULT false,
  raw JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  UNIQUE (instance_name, wa_message_id, from_me)
);
CREATE INDEX IF NOT EXISTS idx_messages_conversation_recent
  ON messages (conversation_id, sent_at DESC, seq DESC);

-- Receipts, deletes and edits that arrive before their message wait here and are folded in
-- when it arrives (Evolution does not guarantee order).
CREATE TABLE IF NOT EXISTS message_patches (
  instance_name TEXT NOT NULL,
  wa_message_id TEXT NOT NULL,
  from_me BOOLEAN NOT NULL,
  status TEXT,
  status_rank SMALLINT NOT NULL DEFAULT 0,
  edited_text TEXT,
  edited_at TIMESTAMPTZ,
  PRIMARY KEY (instance_name, wa_message_id, from_me)
);
