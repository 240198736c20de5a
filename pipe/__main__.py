import logging
import os
import sys

from pipe.main import main

code = main()
# Everything the pipe owns is closed by now (credentials revoked, files removed, output written).
# Skip the interpreter's teardown of Prefect's large module graph: it costs up to a second of the
# user's build time and does nothing for them.
logging.shutdown()
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
