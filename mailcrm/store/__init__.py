"""The database shell: table models, engine, migrations and the queries each concept needs."""
