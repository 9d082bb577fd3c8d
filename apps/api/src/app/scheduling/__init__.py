"""Schedules: the cron grammar and its English, per-organization schedules and their fires,
the engine that fires them, and the instance's background work."""
