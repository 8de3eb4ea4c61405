"""Framework adapters: each reads its framework's request bytes with the cap, calls the core's
``Guard.receive``/``areceive`` and renders the ``Outcome``. Each imports its framework itself
and fails at import with the extra to install; this package imports none."""
