"""What every other package leans on: settings, errors, logs and redaction, the Redis schema, measurements.
Imports nothing else of the project."""
