-- Feeds that are failing now, worst first, with when they will be tried again.
SELECT coalesce(name, feed_url) AS feed, consecutive_failures, last_error, last_ok_at, next_fetch_at
FROM feed_health
WHERE last_status = 'failed'
ORDER BY consecutive_failures DESC;
