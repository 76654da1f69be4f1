"""Notifications out: which job events tell whom, the outbox they wait in, and how they are sent (Apprise).

A job event that notifies (`events.notification_kind`) writes one outbox row per subscribed target in the
event's own transaction (`outbox.enqueue`). Beat hands each target's pending rows to one
`send_notifications` task, which marks them as being sent (committed) before it calls Apprise, so a crash
never sends an event twice; the rows of one target go out as one grouped message (`messages`).
"""
