"""Data in: reading, validation, data versions, splitting and the data report."""
