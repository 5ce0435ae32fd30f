"""Where a model's inputs come from besides the request: stored features (postgres.py), read through the
feature spec an artifact carries (features.py)."""
