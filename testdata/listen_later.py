"""Listen on 127.0.0.1:argv[1] after argv[2] seconds and say so; accept and close every
connection. Once the file argv[3] exists (if given), stop listening but keep running
(a server that hangs)."""

import os
import socket
import sys
import time

port, delay = int(sys.argv[1]), float(sys.argv[2])
hang_file = sys.argv[3] if len(sys.argv) > 3 else None
time.sleep(delay)
server = socket.create_server(("127.0.0.1", port))
server.settimeout(0.05)
print(f"listening on :{port}", flush=True)
while True:
    if hang_file and os.path.exists(hang_file):
        server.close()
        print("hanging", flush=True)
        while True:
            time.sleep(60)
    try:
        connection, _ = server.accept()
    except TimeoutError:
        continue
    connection.close()
