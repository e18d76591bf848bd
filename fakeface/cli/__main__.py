"""`python -m fakeface.cli`: the `fakeface` command."""

import sys

from fakeface.cli import main

if __name__ == "__main__":
    sys.exit(main())
