-- The last ten runs: how they ended, what they found and how long they took.
SELECT run_id, status, feeds_ok, feeds_failed, articles_new, flagged, finished_at - started_at AS took
FROM runs
ORDER BY started_at DESC
LIMIT 10;
