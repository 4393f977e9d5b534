-- AI auto-reply (README "AI auto-reply"): the per-instance limits, and one row per decision.

ALTER TABLE whatsapp_instances
  ADD COLUMN IF NOT EXISTS auto_reply_per_contact_hour INTEGER NOT NULL DEFAULT 5,
  ADD COLUMN IF NOT EXISTS auto_reply_per_instance_day INTEGER NOT NULL DEFAULT 200,
  -- Quiet hours: minutes after local midnight in auto_reply_timezone; both NULL = none.
  ADD COLUMN IF NOT EXISTS auto_reply_quiet_start SMALLINT,
  ADD COLUMN IF NOT EXISTS auto_reply_quiet_end SMALLINT,
  ADD COLUMN IF NOT EXISTS auto_reply_timezone TEXT,
  -- Only when no human answered the conversation in this many minutes (NULL: always).
  ADD COLUMN IF NOT EXISTS auto_reply_human_pause_min INTEGER,
  ADD COLUMN IF NOT EXISTS auto_reply_groups BOOLEAN NOT NULL DEFAULT false;

-- One row per decision, keyed by the message that triggered it: a replayed or duplicated
-- webhook, an actor restart or a crash can never make a second decision for one message.
-- The row is written in the transaction that applies the triggering inbox row, before
-- anything is sent; `sending` is written (with the text) before sendText is called.
CREATE TABLE IF NOT EXISTS auto_replies (
  id BIGSERIAL PRIMARY KEY,
  instance_name TEXT NOT NULL,
  trigger_wa_id TEXT NOT NULL,
  chat_jid TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('decided', 'sending', 'sent', 'failed', 'skipped')),
  reason TEXT,
  answers INTEGER NOT NULL DEFAULT 1,     -- incoming messages this reply answers (debounce)
  due_at TIMESTAMPTZ NOT NULL,
  decided_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  send_started_at TIMESTAMPTZ,
  reply_text TEXT,
  reply_wa_id TEXT,
  settled_at TIMESTAMPTZ,
  UNIQUE (instance_name, trigger_wa_id)
);
-- Limits: replies per contact in the last hour, per instance in the last day.
CREATE INDEX IF NOT EXISTS idx_auto_replies_chat
  ON auto_replies (instance_name, chat_jid, decided_at);
CREATE INDEX IF NOT EXISTS idx_auto_replies_day
  ON auto_replies (instance_name, decided_at) WHERE state IN ('decided', 'sending', 'sent');
-- The actor's work list (and what it resumes at start).
CREATE INDEX IF NOT EXISTS idx_auto_replies_open
  ON auto_replies (instance_name, due_at) WHERE state IN ('decided', 'sending');
-- Retention (store/retention.py): settled decisions expire by age.
CREATE INDEX IF NOT EXISTS idx_auto_replies_settled
  ON auto_replies (settled_at) WHERE settled_at IS NOT NULL;
