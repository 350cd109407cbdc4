"""Splitting, training, tuning and evaluating PD models."""
