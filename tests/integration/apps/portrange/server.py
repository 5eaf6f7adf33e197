"""Listen on ports 9000-9002; to each connection, say which port it reached, then close."""

import selectors
import socket

sel = selectors.DefaultSelector()
for port in range(9000, 9003):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen()
    sel.register(listener, selectors.EVENT_READ, port)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(f"port {key.data}\n".encode())
        conn.close()
