"""The synthetic benchmark: version 1 (``v1``), 2 (``v2``) and 3 (``v3`` + ``v3_kinds``), the
version switch (``render``), what the versions share (``world``, ``draw``, ``clutter``) and the
writer of a rendered split as shards (``generate``)."""
