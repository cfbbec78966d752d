"""ESPnet task subclasses used by the recipe (registered plugins plus recipe-level behaviour)."""
