"""The clip shard format: one Parquet row per clip (``rows``: the row schema, encode / decode)
and a split as part files plus a manifest (``store``: write, open, read, validate). No Ray."""
