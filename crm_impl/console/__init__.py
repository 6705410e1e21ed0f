"""The operator console: server-owned pages under /console/ on top of the operator API."""
