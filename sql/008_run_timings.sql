-- Where a run's time went: seconds per stage (and per part of the articles stage) and the
-- process's peak memory, as a JSON object; filled in as the run finishes and after its digest.

ALTER TABLE core.runs ADD COLUMN stage_seconds VARCHAR;   -- JSON: {"feeds": 1.2, "articles": 30.5, ...}
ALTER TABLE core.runs ADD COLUMN peak_rss_mb DOUBLE;       -- the run's process, highest resident memory

CREATE OR REPLACE VIEW runs AS
SELECT run_id, started_at, finished_at, status, feeds_total, feeds_ok, feeds_not_modified,
       feeds_failed, entries_seen, articles_new, articles_failed, passages_embedded,
       articles_scored, flagged, error, feeds_deferred, stage_seconds, peak_rss_mb
FROM core.runs;
