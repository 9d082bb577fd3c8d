"""The HTTP API: dependencies, the one error handler, and one route module per resource."""
