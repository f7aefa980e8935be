import sys

from blobench.cli import main

sys.exit(main())
