import sys

from edgecv.cli.main import main

sys.exit(main())
