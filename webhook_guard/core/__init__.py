"""The framework-free core: verification, deliveries, the Guard and the response contract.

Nothing in this package may import a web framework or a queue engine; a test imports
``webhook_guard`` in a fresh interpreter and checks ``sys.modules``.
"""
