-- A stable identity for this database, made once when the migration runs (the Atom feed's id:
-- two installs never share one, and moving or renaming the file keeps it).
CREATE TABLE core.meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);
INSERT INTO core.meta VALUES ('install_id', CAST(uuid() AS VARCHAR));

-- The trend counts news by the day it was published (a first run that stores a month of
-- archive no longer shows as one spike on the day it ran). A page without a date, or dated in
-- the future, counts on the day aiwatch stored it.
CREATE OR REPLACE VIEW theme_daily AS
SELECT m.theme, CAST(coalesce(least(a.published_at, a.fetched_at), a.fetched_at) AS DATE) AS day,
       count(*) AS flagged, count(DISTINCT a.outlet) AS outlets, round(avg(m.score), 4) AS mean_score
FROM matches m JOIN core.articles a USING (article_id)
GROUP BY ALL;
