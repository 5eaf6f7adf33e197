"""X.509 for summon.tls: DER parsing, certificate fields, RFC 6125 names, RFC 5280 paths.

der, certificate and names use the stdlib only (the openssl backend uses them to describe the
peer's certificate); path checks signatures with tlslite-ng's key classes, so only the python
backend imports it.
"""
