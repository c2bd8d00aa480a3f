"""Workers: everything that happens after a callback or a request is accepted.

``webhook_service`` may import this package (to accept events and enqueue jobs); this package never imports
``webhook_service``. Job functions are plain module-level functions in :mod:`workers.jobs`.
"""
