"""`python demo.py [--data synthetic] [--host 127.0.0.1] [--port 7860]`: the Gradio chat demo.

A thin wrapper around `lumenrec demo` (see lumenrec/agent/serving/demo_app.py).
"""

import sys

from lumenrec.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
