"""Code that runs inside the image: the PID-1 runtime and the device implementations.

Everything under summon.runtime uses the stdlib only and imports as little as it can: it is
copied into every image, and every import it makes costs every image size and start time.
"""
