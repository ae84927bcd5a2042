"""Neural-network layers and functions (filled in by the training layer)."""
