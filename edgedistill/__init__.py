"""edgedistill."""
