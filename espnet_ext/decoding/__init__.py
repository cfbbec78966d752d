"""Fast CTC-only decoding (:mod:`espnet_ext.decoding.ctc_search`) and the ``Speech2Text``
subclass that uses it for ``ctc_weight: 1.0`` (:mod:`espnet_ext.decoding.speech2text`)."""
