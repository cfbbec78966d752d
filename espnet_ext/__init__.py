"""ESPnet plugins for BEST-RQ self-supervised Conformer pre-training and fine-tuning."""
