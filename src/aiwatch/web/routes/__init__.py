"""The app's pages, one module each: today, search, themes, feeds, runs, links (the digest's
signed judgement links) and auth (login)."""
