"""summon.tls: TLS 1.2/1.3 for summon apps, sans-IO at its core, over either backend.

The device (device.TLSDevice) is what apps get; its errors are in errors, its events in
events, the sans-IO Session in session, the asyncio adapter in streams. This package is
image-side: the stdlib only, plus tlslite-ng and ecdsa for the python backend. Importing it
loads nothing but this docstring.
"""
