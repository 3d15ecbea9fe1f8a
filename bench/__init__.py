"""Benchmarks, run by ``make bench`` (``python -m bench``). See bench/__main__.py."""
