-- Per tenant key quotas. NULL means "the server's own setting" (its flags), so keys made
-- before this migration keep behaving as they did.
ALTER TABLE api_keys ADD COLUMN max_sessions INTEGER;       -- sessions per user; 0 = no limit
ALTER TABLE api_keys ADD COLUMN rate_limit REAL;            -- requests per second, > 0
ALTER TABLE api_keys ADD COLUMN rate_limit_burst INTEGER;   -- requests at once, >= 1
