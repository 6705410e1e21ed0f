"""The Mini App page at `/app/`: server-owned HTML, a few ES modules and a stylesheet, no build."""
