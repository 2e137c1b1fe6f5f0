"""Reliability suite: injected faults must never lose, double or announce a meeting."""
