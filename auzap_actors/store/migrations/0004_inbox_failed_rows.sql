-- A row that failed its last attempt is now settled: outcome 'error' with an applied_at, kept
-- for operators (/admin/tree) and never retried.  Rows that earlier versions left pending after
-- their attempts (and skipped silently) are settled the same way; a pending row is always
-- retried, in order.
UPDATE webhook_inbox SET applied_at = now()
  WHERE applied_at IS NULL AND outcome = 'error' AND attempts >= 5;
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_failed
  ON webhook_inbox (instance_name, id) WHERE outcome = 'error' AND applied_at IS NOT NULL;
