"""summon.net: a pure-Python, sans-IO network stack (Ethernet to TCP) that an app links in.

Copied into images that use network = "direct": stdlib only, and nothing imported that the
stack does not need.
"""
