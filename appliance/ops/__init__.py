"""Running the appliance for years: the disk guard, health and metrics, logs, garbage collection,
webhooks.

Domain code reaches this package only through the edges that already exist (audit.record and
domain events, ``hexvault serve`` for background work, the CLI), and through the disk guard
(``disk``), which the services that store bulk data call before writing. ``edge`` observes every
request at the WSGI edge (the repository fast path's included) and feeds ``metrics`` and the
access log in ``logs``; domain events (appliance/events.py) feed both too. ``health`` answers
/healthz and /readyz; the HTTP views are in appliance/routes/ops.py.
"""
