-- Signed judgement links (the digest's relevant / not relevant links to `aiwatch web`) that
-- were followed: each applies its judgement once, so a link replayed later (after the reader
-- changed their mind in the app, say) changes nothing.

CREATE TABLE core.used_links (
    link_hash   VARCHAR PRIMARY KEY,      -- sha256 of the link's signature
    article_id  VARCHAR NOT NULL,
    theme       VARCHAR NOT NULL,
    relevant    BOOLEAN NOT NULL,
    used_at     TIMESTAMPTZ NOT NULL
);
