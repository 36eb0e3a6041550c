"""The tickwork service: config, command tasks, CLI, HTTP API, web UI and metrics.

Composition root: ``runtime`` (config -> store -> scheduler -> reconcile -> uvicorn).
``config`` parses the TOML file, ``commands`` runs command tasks, ``cli`` holds the
``run``/``demo``/``validate``/``tasks``/``history`` subcommands; ``api`` (``create_app``),
``auth`` and ``metrics`` are the web side. Importing this package imports nothing
outside the standard library; the web modules need ``tickwork[web]``.
"""
