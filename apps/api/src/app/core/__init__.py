"""What every capability stands on: settings, the database and its tenant scoping, pagination,
logs and metrics, the clock."""
