"""summon's HTTP/1.1 server for apps whose entry is a WSGI or an ASGI callable.

The runtime (init.py) serves an entry of kind "wsgi" or "asgi" with `serve`, on the image's
Stack device; docs/http.md says what it does and how to tune it. Its parts:

- protocol: one connection, sans-IO, on h11 (state.py holds its state table);
- wsgi, asgi: the bridges from a request to the app's calling convention and back;
- connection: the loop serving one connection over any transport;
- server: the asyncio server on a Stack device (threads for WSGI, graceful stop);
- exchange: the same without a socket, request bytes in and response bytes out.

h11 is the one library here beyond the stdlib; the builder vendors it into images whose
entry is a WSGI or ASGI callable. This package itself imports nothing: import the module you
need (summon.runtime.http.exchange costs no asyncio).
"""
