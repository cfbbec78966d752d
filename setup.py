"""Only the build step that pyproject.toml cannot express: ship ``espnet_ext.pth``.

A ``.pth`` file must sit at the top of site-packages, outside any package, to be run at
start-up (see espnet_ext/_startup.py). setuptools has no declarative option for that, so
``build_py`` copies it:

- into ``build_lib`` for a regular wheel (``pip install .``): the wheel's root is
  site-packages;
- for an editable install (``pip install -e .``, PEP 660), setuptools' ``editable_wheel``
  builds into a throw-away ``build_lib`` and puts in the wheel only its own
  ``__editable__`` files plus what the ``install`` command's ``install_lib`` folder holds
  (the unpacked wheel): the file is copied there.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "espnet_ext.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        src = str(Path(__file__).resolve().parent / PTH)
        self.copy_file(src, str(Path(self.build_lib) / PTH), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            install_lib = self.get_finalized_command("install").install_lib
            self.copy_file(src, str(Path(install_lib) / PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(Path(self.build_lib) / PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
