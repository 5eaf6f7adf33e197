"""The parts of tlslite-ng the python backend uses, imported without tlslite/__init__.py.

tlslite-ng's package __init__ imports its whole api: integration helpers for asyncore (which
warns with a DeprecationWarning on 3.11 and is gone in 3.12), smtplib, imaplib, poplib,
xmlrpc, http.client... about 90 modules summon never calls. Registering the package as an
empty module first (its __path__ set, its __init__ not run) lets `import tlslite.tlsconnection`
load only what the handshake needs. If the app imported tlslite itself before, its full
package is used as it is.
"""

from __future__ import annotations

import sys

if "tlslite" not in sys.modules:
    import importlib.util

    _spec = importlib.util.find_spec("tlslite")
    if _spec is None:
        raise ImportError("the python TLS backend needs tlslite-ng (pip install tlslite-ng)")
    sys.modules["tlslite"] = importlib.util.module_from_spec(_spec)

from tlslite.constants import AlertDescription, AlertLevel, CipherSuite, ContentType
from tlslite.errors import TLSAlert, TLSLocalAlert, TLSRemoteAlert
from tlslite.handshakesettings import HandshakeSettings
from tlslite.tlsconnection import TLSConnection
from tlslite.utils.keyfactory import parsePEMKey
from tlslite.x509 import X509
from tlslite.x509certchain import X509CertChain

__all__ = [
    "X509",
    "AlertDescription",
    "AlertLevel",
    "CipherSuite",
    "ContentType",
    "HandshakeSettings",
    "TLSAlert",
    "TLSConnection",
    "TLSLocalAlert",
    "TLSRemoteAlert",
    "X509CertChain",
    "parsePEMKey",
]
