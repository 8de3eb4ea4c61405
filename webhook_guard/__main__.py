"""``python -m webhook_guard``: the same as the ``webhook-guard`` command."""

import sys

from webhook_guard.cli import main

sys.exit(main())
