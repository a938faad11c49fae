-- Flagged articles per theme per day over the last 30 days.
SELECT day, theme, flagged, outlets
FROM theme_daily
WHERE day >= current_date - INTERVAL 30 DAY
ORDER BY day, theme;
