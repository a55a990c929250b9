"""Reconciliation sweeps and discrepancies arrive with their own issue."""
