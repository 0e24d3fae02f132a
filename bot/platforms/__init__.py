"""Builds each platform adapter from the settings (the only place that reads them)."""
