"""The demo and the shared pieces of the sample apps (they ship inside the package so that
``webhook-guard demo`` works from any directory)."""
