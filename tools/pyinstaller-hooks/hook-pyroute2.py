"""PyInstaller hook for pyroute2, used by build.sh.

pyroute2 loads its netlink message classes by module name, so the bundle needs all of its
submodules, except its pytest fixtures: collecting those imports pytest plugins that are not
installed and prints errors on every build.
"""

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules(
    "pyroute2", filter=lambda name: not name.startswith("pyroute2.fixtures")
)
