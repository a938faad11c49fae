"""`aiwatch web`: a small server-rendered app over the database and the config file.

Read the flagged stories and judge them, search the archive, tune the themes with a live
preview, watch the feeds' health and the runs. :func:`aiwatch.web.app.create_app` builds it;
this package's ``__init__`` imports nothing, so the digest can sign its links
(:mod:`aiwatch.web.signing`) without loading the web framework.
"""
