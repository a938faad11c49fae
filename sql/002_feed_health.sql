-- Feed health over time: backoff, overlap between fetches, recovery, staleness;
-- and edits of already-seen entries.

ALTER TABLE core.feeds ADD COLUMN next_fetch_at TIMESTAMPTZ;      -- backoff: not fetched before this
ALTER TABLE core.feeds ADD COLUMN last_entry_ids VARCHAR[];        -- entry ids in the last full fetch
ALTER TABLE core.feeds ADD COLUMN last_overlap DOUBLE;             -- share of entries also in the fetch before
ALTER TABLE core.feeds ADD COLUMN last_new_at TIMESTAMPTZ;         -- when a new entry last appeared
ALTER TABLE core.feeds ADD COLUMN recovered_at TIMESTAMPTZ;        -- when it last came back after failures
ALTER TABLE core.feeds ADD COLUMN first_seen_at TIMESTAMPTZ;

ALTER TABLE core.entries_seen ADD COLUMN entry_hash VARCHAR;       -- title/summary/content/link as last seen
ALTER TABLE core.articles ADD COLUMN updated_at TIMESTAMPTZ;       -- set when the feed edited the entry

CREATE OR REPLACE VIEW feed_health AS
SELECT feed_url, last_status, last_ok_at, consecutive_failures, last_error, name, title,
       last_attempt_at, last_http_status, entries_last_fetch, last_warning,
       next_fetch_at, last_overlap, last_new_at, recovered_at
FROM core.feeds;

CREATE OR REPLACE VIEW articles AS
SELECT article_id, url, canonical_url, feed_url, title, text, text_source, author,
       published_at, fetched_at, language, outlet, duplicate_of, run_id, updated_at
FROM core.articles;

ALTER TABLE core.runs ADD COLUMN feeds_deferred INTEGER;           -- feeds skipped while backing off

CREATE OR REPLACE VIEW runs AS
SELECT run_id, started_at, finished_at, status, feeds_total, feeds_ok, feeds_not_modified,
       feeds_failed, entries_seen, articles_new, articles_failed, passages_embedded,
       articles_scored, flagged, error, feeds_deferred
FROM core.runs;
