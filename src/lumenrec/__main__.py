import sys

from lumenrec.cli import main

sys.exit(main())
