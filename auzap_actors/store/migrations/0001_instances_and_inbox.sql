-- Supabase already has auth.users and profiles; create minimal versions only where missing.
CREATE SCHEMA IF NOT EXISTS auth;
CREATE TABLE IF NOT EXISTS auth.users (
  id UUID PRIMARY KEY,
  email TEXT,
  created_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS profiles (
  id UUID PRIMARY KEY REFERENCES auth.users(id) ON DELETE CASCADE,
  organization_id UUID,
  full_name TEXT,
  created_at TIMESTAMPTZ DEFAULT NOW()
);

-- The seed's table, exactly (CONTRACT §9).
CREATE TABLE IF NOT EXISTS whatsapp_instances (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  instance_name TEXT NOT NULL UNIQUE,
  user_id UUID REFERENCES auth.users(id),
  organization_id UUID,
  status TEXT DEFAULT 'disconnected',
  is_connected BOOLEAN DEFAULT false,
  phone_number TEXT,
  qr_code TEXT,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW()
);
CREATE INDEX IF NOT EXISTS idx_whatsapp_instances_user_id ON whatsapp_instances(user_id);
CREATE UNIQUE INDEX IF NOT EXISTS idx_whatsapp_instances_user_unique ON whatsapp_instances(user_id);
CREATE INDEX IF NOT EXISTS idx_whatsapp_instances_instance_name ON whatsapp_instances(instance_name);

-- What the service needs beyond the seed's columns.
ALTER TABLE whatsapp_instances
  ADD COLUMN IF NOT EXISTS evolution_instance_id TEXT,
  ADD COLUMN IF NOT EXISTS evolution_token TEXT,
  ADD COLUMN IF NOT EXISTS profile_name TEXT,
  ADD COLUMN IF NOT EXISTS state_since TIMESTAMPTZ,
  ADD COLUMN IF NOT EXISTS last_reason INTEGER,
  ADD COLUMN IF NOT EXISTS health JSONB NOT NULL DEFAULT '{}'::jsonb,
  ADD COLUMN IF NOT EXISTS auto_reply BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN IF NOT EXISTS auto_reply_prompt TEXT;

-- Durable webhook inbox: a row exists before Evolution gets its 200 (persist, then ack).
-- dedup_key makes a re-delivered body a no-op; rows are applied by the owning actor in id order.
CREATE TABLE IF NOT EXISTS webhook_inbox (
  id BIGSERIAL PRIMARY KEY,
  dedup_key TEXT NOT NULL UNIQUE,
  instance_name TEXT NOT NULL,
  event TEXT NOT NULL,
  payload JSONB NOT NULL,
  received_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
  applied_at TIMESTAMPTZ,
  outcome TEXT CHECK (outcome IN ('applied', 'unhandled', 'orphan', 'invalid', 'error')),
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_pending
  ON webhook_inbox (instance_name, id) WHERE applied_at IS NULL;
