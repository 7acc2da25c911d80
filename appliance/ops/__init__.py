"""Running the appliance for years: health and metrics, garbage collection, webhooks.

Domain code does not import this package; it reaches it only through the edges that already
exist (audit.record for the webhook outbox, ``hexvault serve`` for background work, the CLI).
"""
