"""``manage.py webhook_guard_worker``."""
