import sys

from pipe.main import main

sys.exit(main())
