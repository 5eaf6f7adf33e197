"""The sandbox target: one process under runc with namespaces, seccomp and cgroup limits.

target.py (the Target), instance.py (one container and what it owns), config.py (the OCI
runtime config), seccomp.py (the allowlist and the exec gate), netns.py (the network
namespace), portfwd.py (forwards from host loopback), tap.py (direct mode's TAP device),
cgroups.py (memory and CPU figures).
"""

from summon.targets.sandbox.target import SandboxTarget

__all__ = ["SandboxTarget"]
