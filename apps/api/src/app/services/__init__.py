"""Business rules, one module per noun; functions take the session first."""
