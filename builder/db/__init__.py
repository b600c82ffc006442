"""The database: engine and sessions, the SQLite write lock and group commit, models by domain, migrations, pruning."""
