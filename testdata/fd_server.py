"""A small HTTP server on an inherited socket (sd_listen_fds), or on a port of its own.

    fd_server.py              serve on fd 3 (LISTEN_FDS, LISTEN_PID checked)
    fd_server.py --bind PORT  bind 127.0.0.1:PORT itself (what most servers do)

Each answer is ``<PROCESSMAN_ID> <pid>``. On SIGTERM it stops accepting, finishes the
request it is in, and exits 0: a graceful stop, as uvicorn's and gunicorn's. Says
"serving" once it accepts.
"""

import os
import signal
import socket
import sys

if sys.argv[1:2] == ["--bind"]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[2])))
    listener.listen(128)
else:
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        print(f"no socket for me: LISTEN_PID={os.environ.get('LISTEN_PID')}", flush=True)
        sys.exit(3)
    listener = socket.socket(fileno=3)

stopping = False


def stop(*_: object) -> None:
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
listener.settimeout(0.05)  # so that a stop is seen between accepts
answer = f"{os.environ.get('PROCESSMAN_ID', '?')} {os.getpid()}".encode()
print("serving", flush=True)
while not stopping:
    try:
        connection, _ = listener.accept()
    except TimeoutError:
        continue
    except InterruptedError:
        continue
    with connection:
        connection.settimeout(5)
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                request += chunk
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(answer), answer)
            )
        except OSError:
            pass
listener.close()
sys.exit(0)
