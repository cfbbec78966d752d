"""The embedded corpus: English read speech synthesized with espeak-ng (see local/embedded_corpus.md)."""
