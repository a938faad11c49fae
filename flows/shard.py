"""Deployment entrypoint for the shard builder (see prefect.yaml's ``shard``).

Its workers fetch, extract and embed the shards a writer planned (``prefect.shard_deployment``)
and never open the database, so they may run on any machine that reaches ``storage.shards``.
"""

from aiwatch.flow import shard

__all__ = ["shard"]
