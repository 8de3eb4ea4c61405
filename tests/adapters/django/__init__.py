"""Tests of the Django adapter: middleware, conf, checks, and the sample under real servers."""
