"""HTTP routes, one module per family of clients."""
