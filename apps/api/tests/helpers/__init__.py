"""Helpers of the tests that are not fixtures (those are in the conftest.py files). Test
modules and conftest files import them from here, never from a conftest or a test module."""
