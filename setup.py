"""The one build setting pyproject.toml cannot say: map guests/ and kext/ into the package.

``guests/`` and ``kext/`` stay at the top of the repository (the layout the
product card names). ``package_dir`` installs them as the data packages
``harness.assets.guests`` and ``harness.assets.kext`` (a marker
``__init__.py`` in each makes them regular packages, which importlib.resources
reads alike from a wheel and from an editable install of this checkout), and
pyproject.toml's package-data takes every file under them except build
outputs. pyproject.toml cannot combine package discovery with such a mapping,
hence this file; everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

ASSETS = {"harness.assets.guests": "guests", "harness.assets.kext": "kext"}
CODE = find_namespace_packages(include=["vfio_bridge*", "harness*"], exclude=["*.__pycache__"])

setup(
    packages=[*CODE, *ASSETS],
    package_dir=ASSETS,
)
