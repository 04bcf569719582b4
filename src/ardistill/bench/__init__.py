"""Timing harnesses: steady-state medians after warm-up, ratios measured side by side."""
