"""``python -m mllm_shapx.importer``: runs ``cli.main``.

The command line lives in ``cli`` so that the package can re-export ``main`` without importing this
module (``python -m`` warns when the package already imported its ``__main__``).
"""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
