"""Cluster lifecycle: plan (pure data), apply (the only engine writer), observe (reads it back)."""
