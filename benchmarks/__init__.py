"""Benchmarks that print figures and ratios: ``make bench`` (``QUICK=1`` for a smoke run).

Every script measures all its variants in one process, in interleaved rounds, through
Django's real WSGI handler; see ``benchmarks/__main__.py`` for the list.
"""
