-- Retention (store/retention.py): rows that grow with traffic are deleted once old enough, in
-- small batches taken in age order.  Each kind of expiring row has its own small partial index
-- on its age, so a batch reads only rows it deletes, never the whole table.

-- Settled rows (applied, unhandled, invalid, deleted): every settled row is in exactly one of
-- this index and the next, so ingest pays for one extra index entry per row, not two.
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_settled_at
  ON webhook_inbox (applied_at) WHERE applied_at IS NOT NULL AND outcome <> 'error';
-- Rows settled as failed are kept longer (operators read them in /admin/tree).
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_failed_at
  ON webhook_inbox (applied_at) WHERE applied_at IS NOT NULL AND outcome = 'error';
-- Orphans (events for a name that never became an instance) stay pending; they expire by age.
CREATE INDEX IF NOT EXISTS idx_webhook_inbox_orphan_at
  ON webhook_inbox (received_at) WHERE applied_at IS NULL AND outcome = 'orphan';

-- Receipts and edits waiting for a message that may never arrive: since when they wait.
-- Rows already there count from now (now() is evaluated once: no table rewrite).
ALTER TABLE message_patches ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS idx_message_patches_created_at ON message_patches (created_at);
