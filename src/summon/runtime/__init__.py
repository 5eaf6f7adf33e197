"""Code that runs inside the image: the PID-1 runtime and the device implementations.

Everything under summon.runtime uses the stdlib only and imports as little as it can: it is
copied into every image, and every import it makes costs every image size and start time.
"""

# What a build must import to see the runtime's own module closure, whichever devices the
# app's entry turns out to ask for (the runtime imports most of them lazily).
MODULES = (
    "summon.runtime.init",
    "summon.runtime.config",
    "summon.runtime.posix_devices",
    "summon.devices",
)
# More for an image built with the network mode of the key.
NETWORK_MODULES = {"socket": ("summon.runtime.socket_stack",)}
# More for an image booted as a VM, where init mounts /proc, /dev and /tmp itself.
VM_MODULES = ("ctypes",)
