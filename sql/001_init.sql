-- aiwatch schema, version 1.
-- Tables live in the `core` schema and may change between versions; the views in the
-- default schema (articles, matches, runs, feed_health) are the stable public interface.

CREATE TABLE core.feeds (
    feed_url              VARCHAR PRIMARY KEY,
    name                  VARCHAR,
    title                 VARCHAR,
    etag                  VARCHAR,
    last_modified         VARCHAR,
    last_status           VARCHAR,      -- ok | not_modified | failed
    last_http_status      INTEGER,
    last_attempt_at       TIMESTAMPTZ,
    last_ok_at            TIMESTAMPTZ,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_error            VARCHAR,
    last_warning          VARCHAR,
    entries_last_fetch    INTEGER
);

CREATE TABLE core.articles (
    article_id     VARCHAR PRIMARY KEY,   -- hash of canonical_url
    url            VARCHAR NOT NULL,      -- the link as the feed gave it
    canonical_url  VARCHAR NOT NULL,
    feed_url       VARCHAR NOT NULL,
    entry_id       VARCHAR NOT NULL,      -- the feed's guid, or a stable hash
    title          VARCHAR,
    text           VARCHAR,
    text_source    VARCHAR NOT NULL,      -- page | feed
    author         VARCHAR,
    published_at   TIMESTAMPTZ,
    fetched_at     TIMESTAMPTZ NOT NULL,
    language       VARCHAR,
    content_hash   VARCHAR,
    duplicate_of   VARCHAR,               -- article_id of the earliest copy of the same text
    outlet         VARCHAR,
    page_error     VARCHAR,               -- why the page's own text was not used
    run_id         VARCHAR
);

-- Every URL an article was reached under (feed link, final URL after redirects).
CREATE TABLE core.url_aliases (
    canonical_url  VARCHAR PRIMARY KEY,
    article_id     VARCHAR NOT NULL
);

-- Every (feed, entry id) already handled, so a re-run does no new work.
CREATE TABLE core.entries_seen (
    feed_url    VARCHAR NOT NULL,
    entry_id    VARCHAR NOT NULL,
    article_id  VARCHAR NOT NULL,
    PRIMARY KEY (feed_url, entry_id)
);

CREATE TABLE core.passages (
    article_id  VARCHAR NOT NULL,
    passage_no  INTEGER NOT NULL,         -- 0 = title + lead
    text        VARCHAR NOT NULL,
    text_hash   VARCHAR NOT NULL,
    PRIMARY KEY (article_id, passage_no)
);

-- Keyed by the text's hash: no text is embedded twice.
CREATE TABLE core.embeddings (
    text_hash   VARCHAR NOT NULL,
    model       VARCHAR NOT NULL,         -- model/backend that made the vector
    vector      FLOAT[384] NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (text_hash, model)
);

CREATE TABLE core.themes (
    name         VARCHAR NOT NULL,
    version      VARCHAR NOT NULL,        -- hash of the definition
    description  VARCHAR NOT NULL,
    threshold    DOUBLE NOT NULL,
    definition   VARCHAR NOT NULL,        -- JSON
    active       BOOLEAN NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE core.scores (
    article_id       VARCHAR NOT NULL,
    theme            VARCHAR NOT NULL,
    theme_version    VARCHAR NOT NULL,
    score            DOUBLE NOT NULL,
    flagged          BOOLEAN NOT NULL,
    passage_no       INTEGER,
    passage          VARCHAR,
    nearest_example  VARCHAR,
    matched_terms    VARCHAR[],
    run_id           VARCHAR,
    scored_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (article_id, theme, theme_version)
);

CREATE TABLE core.runs (
    run_id              VARCHAR PRIMARY KEY,
    started_at          TIMESTAMPTZ NOT NULL,
    finished_at         TIMESTAMPTZ,
    status              VARCHAR NOT NULL,   -- running | ok | partial | failed
    feeds_total         INTEGER,
    feeds_ok            INTEGER,
    feeds_not_modified  INTEGER,
    feeds_failed        INTEGER,
    entries_seen        INTEGER,
    articles_new        INTEGER,
    articles_failed     INTEGER,
    passages_embedded   INTEGER,
    articles_scored     INTEGER,
    flagged             INTEGER,
    error               VARCHAR
);

CREATE TABLE core.failures (
    run_id    VARCHAR NOT NULL,
    stage     VARCHAR NOT NULL,   -- feed | article | extract
    url       VARCHAR NOT NULL,
    feed_url  VARCHAR,
    error     VARCHAR NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, stage, url)
);

-- Public views -------------------------------------------------------------------------

CREATE VIEW articles AS
SELECT article_id, url, canonical_url, feed_url, title, text, text_source, author,
       published_at, fetched_at, language, outlet, duplicate_of, run_id
FROM core.articles;

CREATE VIEW matches AS
SELECT s.article_id, a.url, s.theme, s.score, s.passage, s.run_id, s.scored_at AS flagged_at,
       s.theme_version, a.title, a.outlet, a.published_at, s.passage_no, s.nearest_example,
       s.matched_terms
FROM core.scores s
JOIN core.articles a USING (article_id)
JOIN core.themes t ON t.name = s.theme AND t.version = s.theme_version AND t.active
WHERE s.flagged;

CREATE VIEW runs AS
SELECT run_id, started_at, finished_at, status, feeds_total, feeds_ok, feeds_not_modified,
       feeds_failed, entries_seen, articles_new, articles_failed, passages_embedded,
       articles_scored, flagged, error
FROM core.runs;

CREATE VIEW feed_health AS
SELECT feed_url, last_status, last_ok_at, consecutive_failures, last_error, name, title,
       last_attempt_at, last_http_status, entries_last_fetch, last_warning
FROM core.feeds;
