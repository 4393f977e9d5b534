-- Events still unapplied when their instance is deleted are kept with outcome 'deleted' (and an
-- applied_at), so that an instance created later under the same name never applies them.
ALTER TABLE webhook_inbox DROP CONSTRAINT IF EXISTS webhook_inbox_outcome_check;
ALTER TABLE webhook_inbox ADD CONSTRAINT webhook_inbox_outcome_check
  CHECK (outcome IN ('applied', 'unhandled', 'orphan', 'invalid', 'error', 'deleted'));
