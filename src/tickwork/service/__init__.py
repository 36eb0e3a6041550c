"""The tickwork service: config, command tasks, CLI, HTTP API, web UI and metrics."""
