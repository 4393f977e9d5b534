-- Observability (README "Operators"): each webhook row keeps the correlation id of the request
-- that stored it, so the owning actor logs its work under the same id; and the age of the
-- oldest event not applied yet (the inbox lag of /metrics) is one probe of a small partial
-- index, whatever the size of the table (orphans, which are never applied, are left out).
ALTER TABLE webhook_inbox ADD COLUMN IF NOT EXISTS request_id TEXT;
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_unapplied
  ON webhook_inbox (id) WHERE applied_at IS NULL AND outcome IS DISTINCT FROM 'orphan';
