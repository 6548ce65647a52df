"""Evaluation: torchmetrics metrics over pure functional cores, frozen judges, protocols, the runner."""
