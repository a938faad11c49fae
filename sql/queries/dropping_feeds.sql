-- Feeds whose last fetch dropped entries, and why, most first.
SELECT coalesce(name, feed_url) AS feed, entries_last_fetch, entries_dropped, dropped_detail, last_ok_at
FROM feed_health
WHERE entries_dropped > 0
ORDER BY entries_dropped DESC;
