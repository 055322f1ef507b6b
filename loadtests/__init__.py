"""Locust scenarios for load-testing concurrent visits."""
