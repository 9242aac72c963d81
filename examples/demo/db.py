"""A pretend database: takes two seconds to start, then accepts connections on its port."""

import os
import socket
import time

port = int(os.environ.get("PORT", "55432"))
print("db: starting up (2 s)", flush=True)
time.sleep(2)
server = socket.create_server(("127.0.0.1", port))
print(f"db: accepting connections on 127.0.0.1:{port}", flush=True)
while True:
    connection, _ = server.accept()
    connection.close()
