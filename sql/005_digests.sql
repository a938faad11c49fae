-- What each digest contained and where it was delivered, so the next digest brings only news.

CREATE TABLE core.digests (
    digest_id   VARCHAR PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL,
    run_id      VARCHAR,
    scope       VARCHAR NOT NULL,
    n_stories   INTEGER NOT NULL,
    files       VARCHAR[]
);

-- One row per story and theme a digest listed: the state it was sent in.
CREATE TABLE core.digest_items (
    digest_id   VARCHAR NOT NULL,
    story_id    VARCHAR NOT NULL,
    theme       VARCHAR NOT NULL,
    score       DOUBLE NOT NULL,
    n_outlets   INTEGER NOT NULL,
    updated     BOOLEAN NOT NULL,   -- listed again because it changed since an earlier digest
    PRIMARY KEY (digest_id, story_id, theme)
);

-- Deliveries by email or webhook; a failed one is tried again by the next run.
CREATE TABLE core.deliveries (
    digest_id        VARCHAR NOT NULL,
    channel          VARCHAR NOT NULL,   -- email | webhook
    status           VARCHAR NOT NULL,   -- sent | failed
    attempts         INTEGER NOT NULL,
    last_attempt_at  TIMESTAMPTZ NOT NULL,
    error            VARCHAR,
    PRIMARY KEY (digest_id, channel)
);

CREATE VIEW digests AS
SELECT d.digest_id, d.created_at, d.run_id, d.scope, d.n_stories, d.files,
       list(DISTINCT v.channel || ':' || v.status) FILTER (WHERE v.channel IS NOT NULL) AS deliveries
FROM core.digests d LEFT JOIN core.deliveries v USING (digest_id)
GROUP BY ALL;
