"""`ssetap export --format otlp` (placeholder until the span builder lands)."""
