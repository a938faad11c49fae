-- Entries a feed had that aiwatch did not keep, and why: past the per-feed cap, unreadable,
-- not read by either parser, nothing to read, or a link an earlier entry already had.

ALTER TABLE core.feeds ADD COLUMN entries_dropped INTEGER;     -- entries of the last full fetch not kept
ALTER TABLE core.feeds ADD COLUMN dropped_detail VARCHAR;      -- "3 dropped (over the 1,000-entry cap); ..."

CREATE OR REPLACE VIEW feed_health AS
SELECT feed_url, last_status, last_ok_at, consecutive_failures, last_error, name, title,
       last_attempt_at, last_http_status, entries_last_fetch, last_warning,
       next_fetch_at, last_overlap, last_new_at, recovered_at, entries_dropped, dropped_detail
FROM core.feeds;
