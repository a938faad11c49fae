-- Stories carried by more than one outlet.
SELECT headline, n_articles, outlets, first_seen
FROM stories
WHERE n_articles > 1
ORDER BY first_seen DESC;
