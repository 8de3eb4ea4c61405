"""Django management commands of webhook_guard."""
