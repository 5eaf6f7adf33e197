"""summon: build Python apps into sealed unikernel images and run them anywhere.

This module is copied into every image, so it imports nothing.
"""

__version__ = "0.1.0"
