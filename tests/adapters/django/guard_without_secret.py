"""A module whose Guard is built without a secret, as an app missing WEBHOOK_SECRET would be."""

from webhook_guard import Guard

guard = Guard(queue="unused.db")
