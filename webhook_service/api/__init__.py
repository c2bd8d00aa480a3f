"""The web process's views: the NCS receiver (WSGI middleware), the management API, health, metrics and the
OpenAPI document. Each module holds one blueprint."""
