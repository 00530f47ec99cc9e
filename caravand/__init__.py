"""caravand: run fleets of AWS SWF deciders and activity workers."""

__version__ = "0.1.0"
