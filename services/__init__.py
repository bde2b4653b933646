"""Long-lived services of an instance that are not actors: bot-event delivery from the
outbox, edge-command delivery, the durable webhook inbox, ownership sweeps after membership
changes, tenant pollers, the retention sweep, and the domain's metrics collector."""
