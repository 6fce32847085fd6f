import sys

from fastdepth.checks import main

sys.exit(main())
