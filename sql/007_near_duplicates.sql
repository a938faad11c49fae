-- MinHash signatures and LSH buckets for near-duplicate detection (see aiwatch/dedup.py).

CREATE TABLE core.minhash (
    article_id  VARCHAR PRIMARY KEY,
    signature   BIGINT[] NOT NULL
);

CREATE TABLE core.minhash_bands (
    bucket      VARCHAR NOT NULL,     -- "band:hash"
    article_id  VARCHAR NOT NULL,
    PRIMARY KEY (bucket, article_id)
);
