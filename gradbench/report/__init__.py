"""Turning records into things people read: tables, figures, reports and comparisons."""
