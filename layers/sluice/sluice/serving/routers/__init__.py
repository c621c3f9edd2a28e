"""One router per resource: ``health``, ``models`` (listing) and ``predictions``."""
