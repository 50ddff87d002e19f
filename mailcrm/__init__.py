"""mailcrm: a CRM for small sales teams that lives in email."""

__version__ = "0.1.0"
