import os
import sys

# The dev tools are plain packages beside this folder, not installed: import them by name.
DEVTOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if DEVTOOLS not in sys.path:
    sys.path.insert(0, DEVTOOLS)
