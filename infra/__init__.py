"""Infrastructure: what the use cases stand on and no domain owns.

Database and SQLite backend, Redis client and the after-commit batch, response cache,
rate limiter, clock, crypto helpers, PDF joining, metrics, the live hub. Nothing here
imports models, services, schema, workers or web.
"""
