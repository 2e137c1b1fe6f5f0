"""calsync keeps CRM meetings and calendar events in step."""

__version__ = "0.1.0"
