-- `sessionless` (core.state.InstanceState): no WhatsApp session can exist for the row (created
-- by a connect, or logged out, and not seen open since), so a logout Evolution reports then is
-- stale, a deleted predecessor's late logout among them.  Rows from before, and rows other
-- paths insert (restores, adopted instances), are unknown: false, every logout counts.
ALTER TABLE whatsapp_instances ADD COLUMN IF NOT EXISTS sessionless BOOLEAN NOT NULL DEFAULT false;
