-- Flagged articles of the last 7 days, best first per theme.
SELECT theme, round(score, 2) AS score, title, outlet, url
FROM matches
WHERE flagged_at > now() - INTERVAL 7 DAY
ORDER BY theme, score DESC;
