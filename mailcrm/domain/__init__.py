"""The pure core: values, parsing, matching and decisions. No IO, no logging, no database."""
