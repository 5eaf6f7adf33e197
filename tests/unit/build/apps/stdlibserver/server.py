"""Test app: a plain http.server script; one route fails, one answers in cp1252."""

import http.server
import os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/boom":
            # socketserver's handle_error imports traceback to print this: the server must
            # survive it.
            raise RuntimeError("boom")
        body = "price: 5 €".encode("cp1252")  # a codec named only in the script entry
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=cp1252")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    server = http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
    print("serving", flush=True)
    server.serve_forever()
