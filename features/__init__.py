"""Point-in-time behavioural features, one module per family, as Polars lazy queries."""
