-- Articles: raw pages kept (compressed) for re-extraction, honest dates, and stories.

-- The page as fetched, zlib-compressed: `aiwatch reextract` works from it without fetching.
CREATE TABLE core.pages (
    article_id    VARCHAR PRIMARY KEY,
    url           VARCHAR NOT NULL,      -- the URL the page came from (after redirects)
    content_type  VARCHAR,
    fetched_at    TIMESTAMPTZ NOT NULL,
    html_zlib     BLOB NOT NULL
);

ALTER TABLE core.articles ADD COLUMN site_name VARCHAR;       -- the page's own name for its site
ALTER TABLE core.articles ADD COLUMN date_source VARCHAR;     -- feed | page | first_seen
ALTER TABLE core.articles ADD COLUMN date_flags VARCHAR[];     -- e.g. future_page_date, dates_disagree
ALTER TABLE core.articles ADD COLUMN extractor VARCHAR;        -- what produced the stored text
ALTER TABLE core.articles ADD COLUMN extraction_notes VARCHAR[]; -- why earlier extractors were rejected

-- Which story each article belongs to (syndicated copies belong to their original's story).
CREATE TABLE core.story_members (
    article_id  VARCHAR PRIMARY KEY,
    story_id    VARCHAR NOT NULL,        -- the article_id of the story's first article
    similarity  DOUBLE                   -- to that first article (1 for the first itself)
);

CREATE OR REPLACE VIEW articles AS
SELECT article_id, url, canonical_url, feed_url, title, text, text_source, author,
       published_at, fetched_at, language, outlet, duplicate_of, run_id, updated_at,
       date_source, date_flags, extractor, extraction_notes, site_name
FROM core.articles;

CREATE OR REPLACE VIEW stories AS
SELECT coalesce(m.story_id, coalesce(a.duplicate_of, a.article_id)) AS story_id,
       arg_min(a.title, coalesce(a.published_at, a.fetched_at)) AS headline,
       min(coalesce(a.published_at, a.fetched_at)) AS first_seen,
       max(coalesce(a.published_at, a.fetched_at)) AS last_seen,
       count(*) AS n_articles, list(DISTINCT a.outlet ORDER BY a.outlet) AS outlets
FROM core.articles a
LEFT JOIN core.story_members m
       ON m.article_id = coalesce(a.duplicate_of, a.article_id)
GROUP BY 1;
