"""The demo: a self-contained mailcrm installation with sample data, no setup needed."""
