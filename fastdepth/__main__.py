import sys

from fastdepth.cli import main

sys.exit(main())
