"""Identity-first credentials (placeholder; filled in by the [identity] work)."""
