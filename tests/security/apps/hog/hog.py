"""Takes memory until the cgroup's OOM killer ends it (a test app: never exits on its own)."""

chunks = []
while True:
    chunks.append(bytearray(4 << 20))  # touched (zeroed) pages: really resident
    chunks[-1][::4096] = b"x" * len(chunks[-1][::4096])
