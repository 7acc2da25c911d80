"""Running the appliance for years: health and metrics, logs, garbage collection, webhooks.

Domain code does not import this package; it reaches it only through the edges that already
exist (audit.record and domain events, ``hexvault serve`` for background work, the CLI).
``edge`` observes every request at the WSGI edge (the repository fast path's included) and feeds
``metrics`` and the access log in ``logs``; domain events (appliance/events.py) feed both too.
``health`` answers /healthz and /readyz; the HTTP views are in appliance/routes/ops.py.
"""
