"""Trainer extensions (subclasses of ESPnet's Trainer) used by the recipe's tasks."""
