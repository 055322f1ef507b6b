"""Database-backed use cases. Each takes an AsyncSession inside the request's transaction."""
