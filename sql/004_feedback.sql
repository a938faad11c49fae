-- A user's judgements of single matches: `aiwatch feedback URL THEME --yes|--no`.
-- Scoring treats them as examples and as the final word on that article's flag.

CREATE TABLE core.feedback (
    article_id  VARCHAR NOT NULL,
    theme       VARCHAR NOT NULL,
    relevant    BOOLEAN NOT NULL,
    given_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (article_id, theme)
);
