-- More of the public SQL surface: flagged articles per theme per day, and stories.
-- Until story grouping exists, a story is an article together with its syndicated copies.

CREATE VIEW theme_daily AS
SELECT m.theme, CAST(a.fetched_at AS DATE) AS day, count(*) AS flagged,
       count(DISTINCT a.outlet) AS outlets, round(avg(m.score), 4) AS mean_score
FROM matches m JOIN core.articles a USING (article_id)
GROUP BY m.theme, CAST(a.fetched_at AS DATE);

CREATE VIEW stories AS
SELECT a.article_id AS story_id, any_value(a.title) AS headline,
       min(coalesce(c.published_at, c.fetched_at)) AS first_seen,
       max(coalesce(c.published_at, c.fetched_at)) AS last_seen,
       count(*) AS n_articles, list(DISTINCT c.outlet ORDER BY c.outlet) AS outlets
FROM core.articles a
JOIN core.articles c ON c.article_id = a.article_id OR c.duplicate_of = a.article_id
WHERE a.duplicate_of IS NULL
GROUP BY a.article_id;
