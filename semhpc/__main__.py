import sys

from semhpc.cli import main

sys.exit(main())
