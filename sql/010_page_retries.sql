-- Pages that failed for a reason that may pass (a timeout, a 5xx, a connection error, an
-- unexpected error): the article keeps the feed's text meanwhile, and later runs fetch the page
-- again with exponential backoff, a few times at most. A page that comes back replaces the
-- feed's text (the article is re-embedded and re-scored); the row goes when it succeeds or gives up.

CREATE TABLE core.page_retries (
    article_id VARCHAR PRIMARY KEY,
    url VARCHAR NOT NULL,
    feed_url VARCHAR,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error VARCHAR
);
