-- The seed's "all instances and their users" query joins profiles.email; Supabase's profiles
-- has it, the standalone table of 0001 (created only where Supabase's was missing) did not.
--
-- The standalone tables are recognised by their columns (exactly what 0001 creates: Supabase's
-- auth.users has dozens) and marked with a comment, so that later migrations and the instance
-- migration (store/legacy.py: users may be created from a `user_<uuid>` name only where
-- auth.users is ours) can tell them apart.  Supabase's own tables are never altered.
DO $$
DECLARE
  profiles_table regclass := to_regclass('profiles');
BEGIN
  IF EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = 'auth.users'::regclass AND attnum > 0 AND NOT attisdropped
      AND attname NOT IN ('id', 'email', 'created_at')
  ) THEN
    RETURN;  -- Supabase's auth.users (or one someone extended): not ours to change
  END IF;
  COMMENT ON TABLE auth.users IS 'auzap-actors standalone auth.users (no Supabase here)';
  IF profiles_table IS NULL OR EXISTS (
    SELECT 1 FROM pg_attribute
    WHERE attrelid = profiles_table AND attnum > 0 AND NOT attisdropped
      AND attname NOT IN ('id', 'organization_id', 'full_name', 'created_at')
  ) THEN
    RETURN;
  END IF;
  EXECUTE format('COMMENT ON TABLE %s IS %L', profiles_table,
    'auzap-actors standalone profiles (no Supabase here)');
  EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS email TEXT', profiles_table);
  -- Profiles that exist already take their user's address.
  EXECUTE format(
    'UPDATE %s p SET email = u.email FROM auth.users u WHERE u.id = p.id AND p.email IS NULL',
    profiles_table);
END
$$;
