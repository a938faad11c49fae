-- Agreement-picked extraction (extract.method = "agree"): how well the stored text agreed with the
-- other extractors' texts of the page (mean word 3-shingle Jaccard similarity to the other
-- libraries, 0 to 1). NULL for the feed's own text, method cascade and articles stored before.
ALTER TABLE core.articles ADD COLUMN extraction_agreement DOUBLE;

CREATE OR REPLACE VIEW articles AS
SELECT article_id, url, canonical_url, feed_url, title, text, text_source, author,
       published_at, fetched_at, language, outlet, duplicate_of, run_id, updated_at,
       date_source, date_flags, extractor, extraction_notes, site_name, extraction_agreement
FROM core.articles;
