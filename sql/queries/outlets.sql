-- Articles per outlet, and how many kept only the feed's text (page failed or disallowed).
SELECT outlet, count(*) AS articles, count(*) FILTER (WHERE text_source = 'feed') AS feed_text_only
FROM articles
GROUP BY outlet
ORDER BY articles DESC;
