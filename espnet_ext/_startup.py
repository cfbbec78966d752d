"""Run at interpreter start-up by ``espnet_ext.pth``, which installing the package puts in
site-packages: it installs :mod:`espnet_ext.register`'s import hook, so every stock ESPnet
entry point (``python -m espnet2.bin.asr_inference``, ``espnet2.bin.asr_train``,
``espnet2.bin.pack``, ``Speech2Text.from_pretrained``) finds the plugins with no
``import espnet_ext``.

Cheap on purpose: it imports only ``espnet_ext`` and ``espnet_ext.register`` (which import
nothing but ``sys``); the plugins, torch and ESPnet load only when ``espnet2.tasks.asr``,
``ssl`` or ``abs_task`` is imported. ``ESPNET_EXT_NO_AUTOREGISTER=1`` turns it off.
"""

import os

if not os.environ.get("ESPNET_EXT_NO_AUTOREGISTER"):
    from espnet_ext.register import install

    install()
