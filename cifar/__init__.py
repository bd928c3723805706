"""The 32x32 laboratory."""
