"""Reporting back to Bitbucket (placeholder; filled in by the [report] work)."""
