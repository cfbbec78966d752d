"""Iterator factories for ESPnet's trainer (``--iterator_type sharded``)."""
